"""Region builder: flux observations for any box, from the products on disk.

For a box in EPSG:3031 metres: read the Bedmap survey points inside it, drop
invalid ones, thin those closer than ``spacing``, let BedMachine thickness stand
in where there is no survey (flagged as gridded), interpolate the velocity
mosaic bilinearly to every point, form flux q = H v (m²/yr), split train /
test by checkerboard tiles or by flight line, and build the direction
guidance from the velocity grid. The result is a :class:`FluxProblem` like
every other source's, plus a table in the ``points:`` file format that the user
can keep (``iceviz data build SPEC --out FILE.csv``).

Thickness and firn: Bedmap thickness is the radar (physical) thickness;
BedMachine's thickness and surface are ice equivalent (firn air content
removed, ``firn`` variable). ``firn='none'`` keeps physical thickness (Bedmap
as surveyed, BedMachine thickness + firn), as the "Mass Conservation on Rails"
Byrd tensors do; ``firn='subtract'`` gives ice-equivalent thickness, the mass
that the flux conserves (Bedmap − BedMachine firn, BedMachine as is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import param

from iceviz.data.bedmap import empty_survey, read_box
from iceviz.data.grids import BEDMACHINE, GRID_LAYOUTS, GridFile
from iceviz.data.problem import DataError, DirectionGuidance, FluxObservations, FluxProblem, FluxScale, regular_grid
from iceviz.data.products import Catalog
from iceviz.data.region import Bounds, check_bounds, grid_shape_for
from iceviz.data.splits import split_lines
from iceviz.geo.crs import format_bounds
from iceviz.data.synthetic import checkerboard_is_test

SURFACE_SCALE = 1000.0
ICE_MASK = (2, 3)  # BedMachine grounded and floating ice


class RegionRecipe(param.Parameterized):
    """How a box becomes flux observations (every choice the builder makes)."""

    spacing = param.Number(1000.0, bounds=(0.0, 50_000.0),
                           doc="Thin survey points closer than this to an already kept one [m]; 0 keeps all.")
    firn = param.Selector(default="none", objects=["none", "subtract"],
                          doc="Thickness as surveyed (none, as the Byrd tensors) or ice equivalent: minus "
                              "BedMachine's firn air content (subtract).")
    thickness = param.Selector(default="bedmap", objects=["bedmap", "bedmap+bedmachine", "bedmachine"],
                               doc="Survey points only; BedMachine standing in where no survey point lies within "
                                   "'gap'; or BedMachine only. Gridded points are flagged and only train.")
    gap = param.Number(10_000.0, bounds=(500.0, 200_000.0),
                       doc="Distance to the nearest survey point beyond which BedMachine stands in [m].")
    split = param.Selector(default="tiles", objects=["tiles", "lines"],
                           doc="Checkerboard tiles from the box's lower-left corner, or whole flight lines.")
    tile = param.Number(15_000.0, bounds=(1_000.0, 500_000.0),
                        doc="Checkerboard tile size [m]: (i + j) even -> test.")
    frame = param.Number(0.0, bounds=(0.0, 100_000.0),
                         doc="Border of the box kept for training, tiles starting inside it [m] (Byrd tensors: 10 km).")
    test_fraction = param.Number(0.3, bounds=(0.05, 0.8),
                                 doc="Share of survey points held out, by whole flight lines (split='lines').")
    velocity = param.Selector(default="auto", objects=["auto", "measures-insar", "measures-phase"],
                              doc="Velocity product (auto: InSAR-based, else phase-based).")
    direction_n = param.Integer(400, bounds=(10, 2000),
                                doc="Direction-guidance grid nodes along the box's longer side.")
    min_points = param.Integer(50, bounds=(5, None), doc="Fewest usable points a box must hold.")
    seed = param.Integer(0, bounds=(0, None), doc="Seed of the flight-line split.")


@dataclass
class RegionBuild:
    """A built region: the problem, its points table (``points:`` format plus provenance) and counts."""

    problem: FluxProblem
    table: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    def write(self, path) -> None:
        from iceviz.data.points import write_points_csv

        write_points_csv(self.table, path)


def thin(xy: np.ndarray, spacing: float) -> np.ndarray:
    """Indices of a subset in which no two points are closer than ``spacing``, taken greedily in input order.

    Points sharing a square of side spacing/2 keep only the first; the survivors are then taken in order,
    each dropping its neighbours within ``spacing``. Every dropped point lies within 2 × spacing of a kept one.
    """
    from scipy.spatial import cKDTree

    n = len(xy)
    if spacing <= 0 or n < 2:
        return np.arange(n)
    # points sharing a cell of side spacing/2 are certainly too close: keep the first of each cell
    cell = np.floor((xy - xy.min(axis=0)) / (spacing / 2)).astype(np.int64)
    _, first = np.unique(cell[:, 0] * (int(cell[:, 1].max()) + 1) + cell[:, 1], return_index=True)
    cand = np.sort(first)
    pairs = cKDTree(xy[cand]).query_pairs(spacing * (1 - 1e-12), output_type="ndarray")
    m = len(cand)
    if pairs.size == 0:
        return cand
    both = np.concatenate([pairs, pairs[:, ::-1]])
    order = np.argsort(both[:, 0], kind="stable")
    nbr = both[order, 1]
    start = np.searchsorted(both[order, 0], np.arange(m + 1))
    dropped = np.zeros(m, dtype=bool)
    for i in range(m):
        if not dropped[i]:
            dropped[nbr[start[i]:start[i + 1]]] = True
            dropped[i] = False
    return cand[~dropped]


def split_tiles(xy: np.ndarray, bounds: Bounds, tile: float, frame: float = 0.0) -> np.ndarray:
    """'Is test' mask of a checkerboard of ``tile``-metre squares from the box's lower-left corner moved in by
    ``frame``: i = floor((x − xmin − frame)/tile), j likewise, (i + j) even -> test; points within ``frame``
    of the box's edge train. With frame = 10 km, tile = 15 km on the Byrd box this is the split of the
    "Mass Conservation on Rails" tensors."""
    xmin, xmax, ymin, ymax = bounds
    inner = ((xy[:, 0] >= xmin + frame) & (xy[:, 0] < xmax - frame)
             & (xy[:, 1] >= ymin + frame) & (xy[:, 1] < ymax - frame))
    return checkerboard_is_test(xy, tile, (xmin + frame, ymin + frame)) & inner


def _missing(what: str, bounds: Bounds, catalog: Catalog, why: str) -> DataError:
    """The error for a box that no configured ``what`` file covers, naming the files there are."""
    known = ", ".join(f"{f.path.name} ({format_bounds(f.footprint)})" for f in catalog.files if f.footprint) or "none"
    unusable = f"; unusable: {'; '.join(catalog.problems)}" if catalog.problems else ""
    return DataError(f"no {what} file covers the box {format_bounds(bounds)} ({why}); configured files: {known}"
                     f"{unusable}; add one with 'iceviz data add PATH' or the spec option data=PATH")


def _gridded(bounds: Bounds, step: float, survey_xy: np.ndarray, gap: float | None) -> np.ndarray:
    """Grid nodes over the box every ``step`` metres, farther than ``gap`` from any survey point."""
    from scipy.spatial import cKDTree

    x = np.arange(bounds[0] + step / 2, bounds[1], step)
    y = np.arange(bounds[2] + step / 2, bounds[3], step)
    xx, yy = np.meshgrid(x, y)
    xy = np.column_stack([xx.ravel(), yy.ravel()])
    if gap is not None and len(survey_xy):
        dist, _ = cKDTree(survey_xy).query(xy, distance_upper_bound=gap)
        xy = xy[~np.isfinite(dist)]
    return xy


def build_region(bounds: Bounds, recipe: RegionRecipe | None = None, catalog: Catalog | None = None,
                 spec: str | None = None) -> RegionBuild:
    """Build the flux observations of the box ``bounds`` = (xmin, xmax, ymin, ymax), metres (see module doc)."""
    recipe = recipe or RegionRecipe()
    bounds = check_bounds(bounds, spec or "region")
    catalog = catalog if catalog is not None else Catalog.discover()
    spec = spec or "region:box?bbox=" + ",".join(f"{b:.0f}" for b in bounds)
    counts: dict[str, int] = {}
    notes: list[str] = []

    vfile = catalog.velocity(bounds, recipe.velocity)
    if vfile is None:
        raise _missing("velocity (MEaSUREs)" if recipe.velocity == "auto" else recipe.velocity, bounds, catalog,
                       "flux needs velocity")
    bm_file = None
    if recipe.thickness != "bedmap" or recipe.firn == "subtract":
        found = catalog.covering("bedmachine", bounds)
        if not found:
            raise _missing("BedMachine", bounds, catalog, f"thickness={recipe.thickness}, firn={recipe.firn}")
        bm_file = found[0]

    survey = empty_survey()
    if recipe.thickness != "bedmachine":
        files = catalog.covering("bedmap", bounds)
        if not files and recipe.thickness == "bedmap":
            raise _missing("Bedmap survey", bounds, catalog, "thickness=bedmap needs survey points; "
                           "thickness=bedmap+bedmachine lets BedMachine stand in")
        survey = read_box([f.path for f in files], bounds)
    counts["survey_in_box"] = len(survey)
    ok = np.isfinite(survey.thickness) & (survey.thickness > 0)
    counts["dropped_no_thickness"] = int((~ok).sum())
    keep = np.nonzero(ok)[0]
    kept = keep[thin(survey.xy[keep], recipe.spacing)]
    counts["dropped_thinning"] = len(keep) - len(kept)
    xy_s, h_s, s_s, line_s = survey.xy[kept], survey.thickness[kept], survey.surface[kept], survey.labels(kept)
    if recipe.thickness == "bedmap" and len(xy_s) == 0:
        raise DataError(f"{spec}: no usable Bedmap survey point in the box {format_bounds(bounds)} "
                        f"({counts['survey_in_box']} in the box, none with a thickness); try thickness=bedmap+bedmachine")

    xy_g = np.empty((0, 2))
    h_g = s_g = np.empty(0)
    if bm_file is not None:
        with GridFile(bm_file.path, BEDMACHINE) as bm:
            if recipe.thickness != "bedmap":
                gap = recipe.gap if recipe.thickness != "bedmachine" else None
                xy_g = _gridded(bounds, max(recipe.spacing, bm.spacing), xy_s, gap)
            # one read of the box serves the stand-ins, the firn at the survey points and missing surfaces
            g = bm.sampler(bounds, ("thickness", "surface", "firn", "geoid", "mask"))(np.concatenate([xy_g, xy_s]))
        at_g, at_s = slice(0, len(xy_g)), slice(len(xy_g), None)
        firn, geoid = np.nan_to_num(g["firn"]), np.nan_to_num(g["geoid"])
        surface = g["surface"] + firn + geoid  # ellipsoidal, with firn: Bedmap's surface
        ice = np.isin(np.rint(g["mask"][at_g]), ICE_MASK) & (g["thickness"][at_g] > 0)
        xy_g = xy_g[ice]
        h_g = (g["thickness"][at_g] + (firn[at_g] if recipe.firn == "none" else 0.0))[ice]
        s_g = surface[at_g][ice]
        if recipe.firn == "subtract":
            h_s = h_s - firn[at_s]
        miss = ~np.isfinite(s_s)
        if miss.any():
            s_s = np.where(miss, surface[at_s], s_s)
    counts["gridded"] = len(xy_g)
    if recipe.firn == "subtract" and len(xy_s):
        notes.append("firn: BedMachine firn air content subtracted from the survey thickness (ice equivalent)")
    elif recipe.firn == "none":
        notes.append("firn: thickness as surveyed (Bedmap providers' own firn corrections), not ice equivalent")

    xy = np.concatenate([xy_s, xy_g])
    h = np.concatenate([h_s, h_g])
    s = np.concatenate([s_s, s_g])
    gridded = np.r_[np.zeros(len(xy_s), bool), np.ones(len(xy_g), bool)]
    line = np.concatenate([line_s.astype(object), np.full(len(xy_g), "", dtype=object)])

    with GridFile(vfile.path, GRID_LAYOUTS[vfile.product]) as vgrid:
        velocity_at = vgrid.sampler(bounds, ("VX", "VY"))  # one read for the points and the direction grid
    v = velocity_at(xy)
    vel = np.column_stack([v["VX"], v["VY"]])
    good = np.isfinite(vel).all(axis=1) & (h > 0)
    counts["dropped_no_velocity"] = int((~good).sum())
    xy, h, s, vel, gridded, line = xy[good], h[good], s[good], vel[good], gridded[good], line[good]
    direction = _direction(velocity_at, bounds, recipe.direction_n)
    counts["points"] = len(xy)
    if len(xy) < recipe.min_points:
        raise DataError(f"{spec}: the box {format_bounds(bounds)} holds {len(xy)} usable point(s), fewer than "
                        f"min_points={recipe.min_points} ({counts['survey_in_box']} survey points in the box, "
                        f"{counts['dropped_no_thickness']} without thickness, {counts['dropped_no_velocity']} "
                        "without velocity); choose a larger box or thickness=bedmap+bedmachine")
    q = h[:, None] * vel

    # stand-ins only train beside survey points; on their own (thickness=bedmachine) they are the data
    testable = ~gridded if recipe.thickness != "bedmachine" else np.ones(len(xy), bool)
    if recipe.split == "tiles":
        is_test = split_tiles(xy, bounds, recipe.tile, recipe.frame) & testable
        how = f"checkerboard of {recipe.tile / 1000:g} km tiles from the box's lower-left corner" + (
            f", {recipe.frame / 1000:g} km frame kept for training" if recipe.frame else "")
    else:
        if recipe.thickness == "bedmachine":
            raise DataError(f"{spec}: split=lines needs survey lines; thickness=bedmachine has none (use split=tiles)")
        is_test = np.zeros(len(xy), bool)
        is_test[~gridded] = split_lines(line[~gridded], recipe.test_fraction, recipe.seed)
        how = f"whole flight lines, about {recipe.test_fraction:.0%} of survey points, seed {recipe.seed}"
    n_test = int(is_test.sum())
    if n_test == 0 or n_test == len(xy):
        hint = "a smaller tile" if recipe.split == "tiles" else "split=tiles (too few flight lines)"
        raise DataError(f"{spec}: the split ({how}) leaves {len(xy) - n_test} train and {n_test} test points; "
                        f"try {hint}")
    counts.update(train=len(xy) - n_test, test=n_test)
    has_s = bool(np.isfinite(s).all())
    if not has_s:
        notes.append(f"surface elevation missing at {int((~np.isfinite(s)).sum())} point(s): no surface input (+aux)")
    train = ~is_test
    flux = float(np.sqrt(np.mean(np.sum(q[train] ** 2, axis=1))))
    sources = f"{vfile.path.name} ({vfile.product})"
    if len(xy_s):
        sources += f", {len(survey.files)} Bedmap file(s)"
    if counts["gridded"]:
        sources += f", BedMachine ({counts['gridded']} gridded points, train only)"
    notes += [
        f"velocity from {vfile.path.name} ({vfile.product}), interpolated bilinearly; direction guidance from its "
        "grid, covering the test tiles, so +dir models see the test directions",
        f"split: {how}" + ("; gridded (BedMachine) points only train" if recipe.thickness == "bedmap+bedmachine"
                           else ""),
        f"thinned to {recipe.spacing:g} m: {counts['dropped_thinning']} survey points dropped; "
        f"{counts['dropped_no_thickness']} without thickness, {counts['dropped_no_velocity']} without velocity dropped",
    ]
    width, height = bounds[1] - bounds[0], bounds[3] - bounds[2]
    problem = FluxProblem(
        spec=spec,
        train=FluxObservations(xy=xy[train], q=q[train], s=s[train] if has_s else None, line=line[train].astype(str)),
        test=FluxObservations(xy=xy[is_test], q=q[is_test], s=s[is_test] if has_s else None,
                              line=line[is_test].astype(str)),
        scale=FluxScale(x0=bounds[0], y0=bounds[2], length=max(width, height), flux=flux, surface=SURFACE_SCALE),
        bounds=bounds,
        direction=direction,
        grid_shape=grid_shape_for(bounds, 100),
        description=f"flux = thickness × velocity in {format_bounds(bounds)}: {counts['train']} train / "
                    f"{counts['test']} test points from {sources}",
        notes=notes,
    )
    table = pd.DataFrame({
        "x": xy[:, 0], "y": xy[:, 1], "qx": q[:, 0], "qy": q[:, 1], "s": s, "vx": vel[:, 0], "vy": vel[:, 1],
        "split": np.where(is_test, "test", "train"), "thickness": h,
        "source": np.where(gridded, "gridded", "observed"), "line": line.astype(str),
    })
    if not has_s:
        table = table.drop(columns="s")
    return RegionBuild(problem, table, counts)


def _direction(velocity_at: Callable[[np.ndarray], dict[str, np.ndarray]], bounds: Bounds,
               n: int) -> DirectionGuidance | None:
    """Unit velocity on a regular grid of about ``n`` nodes along the longer side (None where all speeds are 0)."""
    shape = grid_shape_for(bounds, n, n_min=2)
    x, y = regular_grid(bounds, shape)
    xx, yy = np.meshgrid(x, y)
    xy = np.column_stack([xx.ravel(), yy.ravel()])
    v = velocity_at(xy)
    vel = np.column_stack([v["VX"], v["VY"]])
    speed = np.hypot(vel[:, 0], vel[:, 1])
    ok = np.isfinite(speed) & (speed > 0)
    if not ok.any():
        return None
    return DirectionGuidance(xy=xy[ok], unit=vel[ok] / speed[ok, None])
