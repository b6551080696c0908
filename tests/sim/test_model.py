"""Transient runs: physical sense (melt retreats the grounding line), determinism, calving, spin-up cache."""

import numpy as np
import pytest

from iceviz.sim.model import DIAGNOSTICS, FIELDS, Forcing, RunSettings, Simulator
from iceviz.sim.scenarios import SCENARIOS, get_scenario
from iceviz.sim.spinup import spin_up_key, spun_up
from iceviz.sim.ssa import SimulationError

SMALL_GLACIER = dict(length=320e3, width=40e3, resolution=10e3, refined_resolution=5e3, spin_up_years=30.0)


@pytest.fixture(scope="module")
def glacier(tmp_path_factory):
    simulator = Simulator(get_scenario("marine-glacier", **SMALL_GLACIER))
    state, _ = spun_up(simulator, root=tmp_path_factory.mktemp("cache"))
    return simulator, state


def test_more_melt_retreats_the_grounding_line_further(glacier):
    simulator, state = glacier
    settings = RunSettings(years=5.0, snapshot_every=1.0)
    ends = [simulator.run(Forcing(melt=melt), settings, state=state).diagnostics["grounding_line"][-1]
            for melt in (0.0, 50.0, 100.0)]
    start = simulator.diagnose(state.h)["grounding_line"]
    assert ends[0] > ends[1] > ends[2]
    assert start - ends[2] > 1e3  # a kilometre or more of retreat in five years


def test_a_run_is_deterministic_and_records_everything(glacier):
    simulator, state = glacier
    settings = RunSettings(years=2.0, snapshot_every=0.5)
    a = simulator.run(Forcing(melt=20.0), settings, state=state)
    b = simulator.run(Forcing(melt=20.0), settings, state=state)
    for name in FIELDS:
        assert np.array_equal(a.fields[name], b.fields[name])
        assert a.fields[name].shape == (5, simulator.mesh.n_nodes)
    assert np.allclose(a.times, [0, 0.5, 1.0, 1.5, 2.0])
    assert set(a.diagnostics) == set(DIAGNOSTICS)
    assert (a.steps["converged"] == 1).all()
    assert a.budget.relative_residual < 1e-10
    assert a.params["forcing"]["melt"] == 20.0 and a.params["scenario"]["scenario"] == "marine-glacier"
    # the surface and base follow flotation
    floating = a.fields["floating"][-1] == 1
    assert np.allclose(a.fields["base"][-1][floating], -917 / 1030 * a.fields["h"][-1][floating])
    assert np.allclose(a.fields["surface"][-1] - a.fields["base"][-1], a.fields["h"][-1])


def test_a_retreating_front_calves_the_ice_beyond_it():
    simulator = Simulator(get_scenario("confined-shelf", resolution=8e3, refined_resolution=4e3))
    run = simulator.run(Forcing(calving="retreat", retreat_rate=3000.0), RunSettings(years=3.0, snapshot_every=1.0))
    assert np.allclose(run.diagnostics["front"], 80e3 - 3000.0 * run.times)
    beyond = simulator.mesh.points[:, 0] > run.diagnostics["front"][-1]
    assert np.allclose(run.fields["h"][-1][beyond], simulator.transport.floor)
    assert run.budget.calved > 0 and run.budget.relative_residual < 1e-10
    fixed = simulator.run(Forcing(), RunSettings(years=3.0, snapshot_every=1.0))
    assert fixed.budget.calved == 0 and fixed.diagnostics["volume"][-1] > run.diagnostics["volume"][-1]


def test_spin_ups_are_cached_by_their_inputs(tmp_path):
    scenario = get_scenario("confined-shelf", resolution=8e3, refined_resolution=4e3, spin_up_years=3.0)
    simulator = Simulator(scenario)
    first, hit = spun_up(simulator, root=tmp_path)
    assert not hit and first.t == 0.0
    again, hit = spun_up(simulator, root=tmp_path)
    assert hit and np.array_equal(again.h, first.h) and np.array_equal(again.u, first.u)
    # a damaged cache file is recomputed, not trusted
    (cached,) = tmp_path.glob("spinup-confined-shelf-*.npz")
    cached.write_bytes(b"not a zip file")
    redone, hit = spun_up(simulator, root=tmp_path)
    assert not hit and np.array_equal(redone.h, first.h)
    # any input changes the key
    other = Simulator(get_scenario("confined-shelf", resolution=8e3, refined_resolution=4e3, spin_up_years=4.0))
    assert spin_up_key(other) != spin_up_key(simulator)


def test_scenarios_refuse_bad_input():
    with pytest.raises(SimulationError, match="unknown scenario 'mismip'.*marine-glacier.*confined-shelf"):
        get_scenario("mismip")
    with pytest.raises(SimulationError, match="no parameter.*'melt'"):
        get_scenario("marine-glacier", melt=3.0)
    with pytest.raises(SimulationError, match="confined-shelf"):
        get_scenario("confined-shelf", length=-5.0)
    with pytest.raises(SimulationError, match="refined_resolution"):
        get_scenario("marine-glacier", resolution=2e3, refined_resolution=5e3).mesh()
    simulator = Simulator(get_scenario("confined-shelf", resolution=8e3, refined_resolution=4e3))
    start = simulator.initial_state()
    start.h[0] = -5.0
    with pytest.raises(SimulationError, match="negative thickness"):
        simulator.run(Forcing(), RunSettings(years=1.0), state=start)
    assert set(SCENARIOS) == {"marine-glacier", "confined-shelf"}


def test_the_marine_glacier_bed_is_mismip_plus():
    scenario = get_scenario("marine-glacier")
    centre = np.array([[0.0, 40e3], [640e3, 40e3]])
    assert np.allclose(scenario.bed(centre), [-150.0, -150 - 728.8 * (640 / 750) ** 2 + 343.91 * (640 / 750) ** 4
                                               - 50.57 * (640 / 750) ** 6], atol=0.01)
    # side ridges about 500 m above the trough, and the same shape on a channel half as long
    assert scenario.bed(np.array([[300e3, 0.0]]))[0] - scenario.bed(np.array([[300e3, 40e3]]))[0] > 450
    half = get_scenario("marine-glacier", length=320e3, width=40e3)
    assert np.allclose(half.bed(centre / 2), scenario.bed(centre))


def test_a_scenario_can_be_sized_to_a_map_box():
    from iceviz.sim.scenarios import box_overrides

    sized = box_overrides("marine-glacier", (0.0, 100e3, 0.0, 300e3))
    assert sized["length"] == 300e3 and sized["width"] == 100e3
    default, scenario = get_scenario("marine-glacier"), get_scenario("marine-glacier", **sized)
    nodes = scenario.mesh().n_nodes
    assert 0.5 < nodes / default.mesh().n_nodes < 2.0  # resolution scaled with the box
    with pytest.raises(SimulationError, match="xmin < xmax"):
        box_overrides("marine-glacier", (5.0, 1.0, 0.0, 1.0))
    with pytest.raises(SimulationError, match="unknown scenario"):
        box_overrides("mismip", (0.0, 1.0, 0.0, 1.0))
