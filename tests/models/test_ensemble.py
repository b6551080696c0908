"""Batched ensembles: each member is exactly its own network, members differ, the dfNN mean is divergence-free,
one optimiser step trains every member as it would alone."""

import pytest
import torch

from iceviz.models.ensemble import DirectEnsemble, DivergenceFreeEnsemble, stack_members
from iceviz.models.flux import DirectFlux, DivergenceFreeFlux
from tests.models.test_flux import COMMON, _fitted_surface


def _members(cls, k=4, surface=None, **kwargs):
    extra = dict(surface=surface, surface_mean=1.0, surface_std=0.5) if surface is not None else {}
    members = []
    for seed in range(k):
        torch.manual_seed(seed)
        member = cls(16, 3, "silu", **COMMON, **extra, **kwargs).double()
        if surface is not None:  # members that have learned to use the surface (they start without it)
            with torch.no_grad():
                member.hidden[0].weight[:, 2].normal_()
        members.append(member)
    return members


def _points(n=200, seed=0):
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("cls", [DivergenceFreeFlux, DirectFlux])
@pytest.mark.parametrize("aux", [False, True])
def test_each_member_computes_exactly_what_its_network_computes_alone(cls, aux):
    members = _members(cls, surface=_fitted_surface() if aux else None)
    ensemble = stack_members(members)
    xy = _points()
    q = ensemble.members(xy)
    assert q.shape == (4, 200, 2)
    for k, member in enumerate(members):
        assert torch.allclose(q[k], member(xy), atol=1e-13, rtol=0)
    assert torch.allclose(ensemble(xy), q.mean(0))
    # members differ (their initialisations do): a spread, not K copies
    mean, std = ensemble.mean_and_std(xy)
    assert (std > 1e-3 * mean.abs().mean()).float().mean() > 0.9


@pytest.mark.parametrize("aux", [False, True])
def test_the_mean_of_dfnn_members_is_divergence_free_float64(aux):
    ensemble = stack_members(_members(DivergenceFreeFlux, surface=_fitted_surface() if aux else None))
    xy = _points(300, seed=1)
    div = ensemble.divergence(xy)
    assert ensemble(xy).abs().mean() > 0.01  # a real field
    assert div.abs().max() < 1e-11
    direct = stack_members(_members(DirectFlux))
    assert direct.divergence(xy).abs().mean() > 1e-3  # the check can fail: a direct ensemble is not


def test_direct_members_divergence_by_tangents_matches_each_network():
    members = _members(DirectFlux, surface=_fitted_surface())
    ensemble = stack_members(members)
    xy = _points(50)
    q, div = ensemble.members_and_divergence(xy)
    for k, member in enumerate(members):
        q_k, div_k = member.flux_and_divergence(xy)
        assert torch.allclose(q[k], q_k, atol=1e-13) and torch.allclose(div[k], div_k, atol=1e-11)


@pytest.mark.parametrize("cls", [DivergenceFreeFlux, DirectFlux])
def test_one_step_on_the_ensemble_is_each_members_own_step(cls):
    """The sum of the members' losses separates: one Adam step on the stacked weights moves member k exactly as
    a step on network k alone would."""
    members = _members(cls, k=3)
    alone = _members(cls, k=3)
    ensemble = stack_members(members)
    xy, target = _points(64), torch.randn(64, 2, dtype=torch.float64)
    opt = torch.optim.Adam(ensemble.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        ((ensemble.members(xy) - target) ** 2).mean(dim=(1, 2)).sum().backward()
        opt.step()
    for k, member in enumerate(alone):
        own = torch.optim.Adam(member.parameters(), lr=1e-2)
        for _ in range(3):
            own.zero_grad()
            ((member(xy) - target) ** 2).mean().backward()
            own.step()
        assert torch.allclose(ensemble.members(xy)[k], member(xy), atol=1e-10)


def test_members_of_mixed_kinds_are_refused():
    with pytest.raises(ValueError, match="one kind"):
        stack_members(_members(DivergenceFreeFlux, k=1) + _members(DirectFlux, k=1))
    with pytest.raises(ValueError, match="at least one"):
        stack_members([])
    assert isinstance(stack_members(_members(DirectFlux, k=2)), DirectEnsemble)
    assert isinstance(stack_members(_members(DivergenceFreeFlux, k=2)), DivergenceFreeEnsemble)
