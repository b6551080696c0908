"""The Byrd Glacier flux tensors of "Mass Conservation on Rails" (spec ``byrd-mcor:DIR``).

Three channels-first tensors (see ``shared/data/byrd_mcor/README.md``), converted
to physical units on the way in:

* x = 400 000 + 200 000·xn, y = −950 000 + 200 000·yn (EPSG:3031 metres),
* q = 70 000·(cols 5, 6) m²/yr, s = 2 000·col 2 m,

with :data:`BYRD_SCALE` mapping back exactly to the paper's scaled units.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from iceviz.data.locations import data_dirs
from iceviz.data.problem import DataError, DirectionGuidance, FluxObservations, FluxProblem, FluxScale
from iceviz.data.public import fetch_hint

BYRD_SCALE = FluxScale(x0=400_000.0, y0=-950_000.0, length=200_000.0, flux=70_000.0, surface=2000.0)
BYRD_BOUNDS = (400_000.0, 600_000.0, -950_000.0, -750_000.0)
BYRD_GRID_SHAPE = (100, 100)
TRAIN_FILE = "train_tensor.pt"
TEST_FILE = "test_tensor.pt"
GUIDANCE_FILE = "velocity_unit_norm.pt"
N_CHANNELS = 9
COL_X, COL_Y, COL_S, COL_QX, COL_QY = 0, 1, 2, 5, 6


def candidate_dirs(directory: str | os.PathLike | None = None) -> list[Path]:
    """Where to look: ``directory`` if given, else ``byrd_mcor`` under the data directories (see
    :func:`iceviz.data.locations.data_dirs`)."""
    if directory not in (None, ""):
        return [Path(directory).expanduser()]
    return data_dirs("byrd_mcor")


def resolve_dir(directory: str | os.PathLike | None = None) -> Path:
    """The first existing directory of :func:`candidate_dirs` (DataError naming all tried)."""
    tried = candidate_dirs(directory)
    for path in tried:
        if path.is_dir():
            return path
    raise DataError(
        f"byrd-mcor: the Byrd tensors are not on this machine; {fetch_hint('byrd-mcor')}, or give their folder "
        "as byrd-mcor:DIR. Looked in " + ", ".join(str(p) for p in tried)
    )


def load_tensor(path: Path) -> np.ndarray:
    """A 2-D float tensor file as a float64 array (DataError naming the file otherwise)."""
    import torch

    if not path.is_file():
        raise DataError(f"byrd-mcor: missing file {path}")
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataError(f"byrd-mcor: cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(t, torch.Tensor):
        raise DataError(f"byrd-mcor: {path} holds a {type(t).__name__}, expected a tensor")
    if t.ndim != 2 or not t.is_floating_point():
        raise DataError(f"byrd-mcor: {path} holds a {tuple(t.shape)} {t.dtype} tensor, expected a 2-D float tensor")
    a = t.detach().to(torch.float64).numpy()
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0 if a.shape[0] != N_CHANNELS else 1])[:5]
        raise DataError(f"byrd-mcor: {path} has {int(bad.sum())} NaN/infinite values (first at points {rows.tolist()})")
    return a


def observations(a: np.ndarray, path: Path) -> FluxObservations:
    """Channels-first (9, N) tensor -> observations in metres, m²/yr and m."""
    if a.shape[0] != N_CHANNELS:
        hint = " (it looks row-major; the files are channels-first)" if a.shape[1] == N_CHANNELS else ""
        raise DataError(f"byrd-mcor: {path} has shape {a.shape}, expected ({N_CHANNELS}, N){hint}")
    if a.shape[1] == 0:
        raise DataError(f"byrd-mcor: {path} has no points")
    s = BYRD_SCALE
    return FluxObservations(
        xy=s.xy_to_phys(a[[COL_X, COL_Y]].T),
        q=s.flux * a[[COL_QX, COL_QY]].T,
        s=s.surface * a[COL_S],
    )


def guidance(a: np.ndarray, path: Path) -> DirectionGuidance:
    """(M, 4) guidance tensor [xn, yn, ux, uy] -> unit directions at metres (renormalised in float64)."""
    if a.ndim != 2 or a.shape[1] != 4:
        raise DataError(f"byrd-mcor: {path} has shape {a.shape}, expected (M, 4) columns xn, yn, ux, uy")
    norm = np.hypot(a[:, 2], a[:, 3])
    keep = norm > 0
    if not keep.any():
        raise DataError(f"byrd-mcor: {path} has no non-zero direction vectors")
    return DirectionGuidance(xy=BYRD_SCALE.xy_to_phys(a[keep, :2]), unit=a[keep, 2:4] / norm[keep, None])


def load_byrd(directory: str | os.PathLike | None = None, spec: str | None = None) -> FluxProblem:
    """The Byrd problem from ``directory`` (see :func:`candidate_dirs`), in physical units."""
    root = resolve_dir(directory)
    train_path, test_path, guide_path = root / TRAIN_FILE, root / TEST_FILE, root / GUIDANCE_FILE
    train = observations(load_tensor(train_path), train_path)
    test = observations(load_tensor(test_path), test_path)
    direction = guidance(load_tensor(guide_path), guide_path)
    return FluxProblem(
        spec=spec or f"byrd-mcor:{root}",
        train=train,
        test=test,
        scale=BYRD_SCALE,
        bounds=BYRD_BOUNDS,
        direction=direction,
        grid_shape=BYRD_GRID_SHAPE,
        description="Byrd Glacier flux (Bedmap thickness × MEaSUREs velocity), 200 km box, 15 km checkerboard split",
        notes=[
            "the direction-guidance grid (400 × 400 MEaSUREs nodes) covers the test tiles, "
            "so +dir models see the test directions",
            "scaled units are the paper's: coordinates / 200 km from (400 km, −950 km), flux / 70 000 m²/yr",
            "flux and surface scalings are inferred from the dfNGP release (see the data README)",
        ],
    )
