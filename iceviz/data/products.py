"""The real products iceviz reads, and the catalogue of the user's files.

=================  ============================================  =============================
key                product                                        as distributed
=================  ============================================  =============================
measures-insar     MEaSUREs InSAR-based velocity v2, NSIDC-0484   antarctica_ice_velocity_450m_v2.nc
measures-phase     MEaSUREs phase-based velocity, NSIDC-0754      antarctic_ice_vel_phase_map_v01.nc
bedmachine         BedMachine Antarctica, NSIDC-0756              BedMachineAntarctica-v3.nc
bedmap             Bedmap 1-3 standardised survey points (UK PDC)  PROVIDER_YEAR_CAMPAIGN_TYPE_BMn.csv
=================  ============================================  =============================

A file's product is recognised from its content (variables, columns), not its
name. The :class:`Catalog` gathers the files recorded in the settings file
(``iceviz data add``), named by environment variables, or given as spec
options, with each file's footprint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from iceviz.data import settings
from iceviz.data.problem import DataError
from iceviz.data.region import Bounds
from iceviz.data.roots import WALK_SECONDS, walk_files

ADD_WALK_SECONDS = 30.0
"""How long ``iceviz data add`` may walk a folder [s] (the app's walks get WALK_SECONDS)."""


@dataclass(frozen=True)
class Product:
    """A product: its key, name, dataset (who distributes it), download addresses and whether they need an
    Earthdata login."""

    key: str
    name: str
    dataset: str
    urls: tuple[str, ...] = ()
    earthdata: bool = True


PRODUCTS: dict[str, Product] = {p.key: p for p in (
    Product("measures-insar", "MEaSUREs InSAR-based Antarctica ice velocity v2", "NSIDC-0484.002",
            ("https://n5eil01u.ecs.nsidc.org/MEASURES/NSIDC-0484.002/1996.01.01/antarctica_ice_velocity_450m_v2.nc",)),
    Product("measures-phase", "MEaSUREs phase-based Antarctica ice velocity", "NSIDC-0754.001",
            ("https://n5eil01u.ecs.nsidc.org/MEASURES/NSIDC-0754.001/1996.01.01/antarctic_ice_vel_phase_map_v01.nc",)),
    Product("bedmachine", "BedMachine Antarctica v3", "NSIDC-0756.003",
            ("https://n5eil01u.ecs.nsidc.org/MEASURES/NSIDC-0756.003/1970.01.01/BedMachineAntarctica-v3.nc",)),
    Product("bedmap", "Bedmap 1-3 standardised survey points", "UK Polar Data Centre", earthdata=False),
)}
VELOCITY_PRODUCTS = ("measures-insar", "measures-phase")


def interchangeable(found: str, wanted: str) -> bool:
    """True when a file of product ``found`` serves where ``wanted`` is asked for (the same product, or either
    velocity mosaic for the other)."""
    return found == wanted or {found, wanted} <= set(VELOCITY_PRODUCTS)


def identify(path: str | os.PathLike, suffix: str | None = None) -> str:
    """The product key of a file, from its content (DataError naming what was found otherwise).

    ``suffix`` reads the file as that type (e.g. a download's ``.part`` file as ``.nc``).
    """
    from iceviz.data.bedmap import read_header
    from iceviz.data.grids import GRID_LAYOUTS, NETCDF_LOCK, open_netcdf

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    suffix = (suffix or p.suffix).lower()
    if suffix == ".csv":
        read_header(p)
        return "bedmap"
    if suffix not in (".nc", ".nc4", ".netcdf"):
        raise DataError(f"{p}: not a product file: expected a NetCDF (.nc) grid or a Bedmap .csv")
    with NETCDF_LOCK, open_netcdf(p) as ds:
        names = set(map(str, ds.data_vars))
        title = str(ds.attrs.get("title", ds.attrs.get("Title", ""))).lower()
    if set(GRID_LAYOUTS["bedmachine"].required) <= names:
        return "bedmachine"
    if {"VX", "VY"} <= names:
        return "measures-phase" if "phase" in title or "phase" in p.name.lower() else "measures-insar"
    raise DataError(f"{p}: not a recognised product: found variables {', '.join(sorted(names)) or '(none)'}; "
                    "expected VX, VY (MEaSUREs) or thickness, surface, bed, mask, firn, errbed, source (BedMachine)")


@dataclass
class DataFile:
    """One product file and what is known about it."""

    path: Path
    product: str
    origin: str  # "settings", an environment variable name, or "option"
    footprint: Bounds | None = None
    size: int = 0
    shape: tuple[int, int] | None = None  # grids: (ny, nx)
    points: int | None = None  # survey files
    spacing_m: float | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        return {"path": str(self.path), "product": self.product, "origin": self.origin,
                "footprint_m": list(self.footprint) if self.footprint else None, "size_bytes": self.size,
                "shape": list(self.shape) if self.shape else None, "points": self.points,
                "spacing_m": self.spacing_m, "detail": self.detail}


def describe_file(path: Path, product: str | None = None, origin: str = "settings") -> DataFile:
    """A :class:`DataFile` with its footprint (grids: from the coordinates; Bedmap: from its index, built once)."""
    from iceviz.data.bedmap import index_meta
    from iceviz.data.grids import GRID_LAYOUTS, GridFile

    product = product or identify(path)
    info = DataFile(Path(path), product, origin, size=Path(path).stat().st_size)
    if product == "bedmap":
        meta = index_meta(path)
        info.footprint = tuple(meta["footprint"]) if meta["footprint"] else None
        info.points = int(meta["points"])
        info.detail = f"firn correction {meta['firn_correction']}"
    else:
        with GridFile(path, GRID_LAYOUTS[product]) as grid:
            info.footprint, info.shape, info.spacing_m = grid.footprint, grid.shape, grid.spacing
    return info


def expand(path: Path, seconds: float = WALK_SECONDS, notes: list[str] | None = None) -> list[Path]:
    """A file, or the product files under a folder (``.nc`` and ``.csv``, recursively, sorted); the walk's
    notes (folders skipped as unreadable, or where it stopped: :func:`iceviz.data.roots.walk_files`) are
    appended to ``notes`` when given."""
    p = Path(path).expanduser()
    if p.is_dir():
        walk = walk_files(p, (".nc", ".csv"), seconds=seconds)
        if notes is not None:
            notes += [f"{p}: {note}" for note in walk.notes]
        return walk.files
    if p.exists():
        return [p]
    raise DataError(f"{p}: no such file or folder")


@dataclass
class Catalog:
    """The product files iceviz knows about, and the ones it could not use (with the reason)."""

    files: list[DataFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def discover(cls, extra: dict[str, list[Path]] | None = None, use_settings: bool = True,
                 session: Iterable[Path] = ()) -> "Catalog":
        """Files from the settings file, the environment variables, ``extra`` (product -> paths, e.g. spec
        options) and ``session`` (folders one app session picked under the data roots, any product); a path
        that cannot be used is listed in :attr:`problems`, never raised."""
        cat = cls()
        sources: list[tuple[Path, str | None, str]] = []
        if use_settings:
            try:
                sources += [(p, None, "settings") for p in settings.read_paths()]
            except DataError as err:
                cat.problems.append(str(err))
        for product, paths in settings.env_paths().items():
            sources += [(p, product, settings.ENV_VARS[product]) for p in paths]
        for product, paths in (extra or {}).items():
            sources += [(Path(p), product, "option") for p in paths]
        sources += [(Path(p), None, "session") for p in session]
        seen: set[Path] = set()
        for root, product, origin in sources:
            notes: list[str] = []
            try:
                paths = expand(root, notes=notes)
            except DataError as err:
                cat.problems.append(f"{err} ({origin})")
                continue
            cat.problems += [f"{note} ({origin})" for note in notes]
            for p in paths:
                key = p.resolve()
                if key in seen:
                    continue
                seen.add(key)
                try:
                    found = identify(p)
                    if product is not None and not interchangeable(found, product):
                        raise DataError(f"{p}: given as {product} but it is a {found} file")
                    cat.files.append(describe_file(p, product or found, origin))
                except (DataError, OSError) as err:
                    if root.is_dir():
                        continue  # other files in a folder are not an error
                    cat.problems.append(f"{err} ({origin})")
        return cat

    def of(self, product: str) -> list[DataFile]:
        return [f for f in self.files if f.product == product]

    def covering(self, product: str, bounds: Bounds) -> list[DataFile]:
        """Files of ``product`` whose footprint meets the box."""
        from iceviz.data.region import intersect

        return [f for f in self.of(product) if f.footprint is not None and intersect(f.footprint, bounds)]

    def mosaics(self) -> list[DataFile]:
        """The velocity mosaics, InSAR-based first."""
        return [f for p in VELOCITY_PRODUCTS for f in self.of(p)]

    def velocity(self, bounds: Bounds, prefer: str = "auto") -> DataFile | None:
        """The velocity file for a box: ``prefer`` (a product key) or, for 'auto', InSAR then phase."""
        order = VELOCITY_PRODUCTS if prefer == "auto" else (prefer,)
        for product in order:
            found = self.covering(product, bounds)
            if found:
                return found[0]
        return None

    def summary(self) -> list[dict]:
        return [f.as_dict() for f in self.files]


def add_paths(paths: list[Path]) -> tuple[list[DataFile], list[str]]:
    """Record ``paths`` in the settings file after checking them: the files found and the problems (nothing is
    recorded for a path with no product file)."""
    found: list[DataFile] = []
    problems: list[str] = []
    keep: list[Path] = []
    for root in paths:
        root = Path(root).expanduser().resolve()
        try:
            files = expand(root, seconds=ADD_WALK_SECONDS, notes=problems)
        except DataError as err:
            problems.append(str(err))
            continue
        here = []
        for p in files:
            try:
                here.append(describe_file(p, None, "settings"))
            except (DataError, OSError) as err:
                if not root.is_dir():
                    problems.append(str(err))
        if here:
            keep.append(root)
            found += here
        elif root.is_dir():
            problems.append(f"{root}: no MEaSUREs, BedMachine or Bedmap file in this folder")
    if keep:
        settings.write_paths(settings.read_paths() + keep)
    return found, problems


def remove_paths(paths: list[Path]) -> list[Path]:
    """Forget ``paths`` (files or folders) in the settings file; returns the ones that were recorded."""
    current = settings.read_paths()
    drop = {str(Path(p).expanduser().resolve()) for p in paths}
    kept = [p for p in current if str(p) not in drop]
    settings.write_paths(kept)
    return [p for p in current if str(p) in drop]
