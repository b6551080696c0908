"""Real-data path on full-size files: region build time and memory, continental map render times.

Writes (once) synthetic files of the products' full size and layout into --dir:
a 12,445 x 12,445 MEaSUREs InSAR mosaic at 450 m (VX, VY, STDX, STDY, ERRX,
ERRY, CNT, uncompressed and contiguous like the distributed 6.8 GB file;
without its 2-D lat / lon, which iceviz never reads), a 13,333 x 13,333
BedMachine file at 500 m (uncompressed), and --bedmap-gb of Bedmap
CSVs (straight flight lines across the continent, 25 m along-track, as the
standardised files). Velocity and thickness are the synthetic glacier in the
Byrd box and a smooth outward flow elsewhere.

Then, each in a fresh process (peak memory from getrusage):
* ``add``: ``iceviz data add`` of the folder without the speed map (the one-off Bedmap indexing and the
  footprints; from a cold cache);
* ``build``: ``region:byrd`` from the files (warm: indexes exist), --repeats times;
* ``eager``: the comparison: reading the whole VX and VY into memory, as a non-lazy reader would;
* ``map``: the continental speed map: coarse levels computed once, then rendered for the whole continent
  and zooms of 1,000 km, 200 km and 50 km (datashader to 620 px), each --repeats times.

    python -m benchmarks.real_data --dir /tmp/iceviz-fullsize --json benchmarks/results/real_data.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EDGE_V, SPACING_V = 12_445, 450.0
EDGE_B, SPACING_B = 13_333, 500
CHUNK = 1024
BYRD = (400_000.0, 600_000.0, -950_000.0, -750_000.0)
COAST = 2_300_000.0


def _field(x: np.ndarray, y: np.ndarray, what: str) -> np.ndarray:
    """Velocity (…, 2) or thickness on a block: the glacier in the Byrd box, outward flow elsewhere, NaN at sea."""
    from iceviz.data import synthetic as syn

    xx, yy = np.meshgrid(x, y)
    r = np.hypot(xx, yy) + 1.0
    sea = r > COAST
    inside = (xx >= BYRD[0] - 5e3) & (xx <= BYRD[1] + 5e3) & (yy >= BYRD[2] - 5e3) & (yy <= BYRD[3] + 5e3)
    if what == "velocity":
        speed = 2.0 + 300.0 * (r / COAST) ** 4
        out = np.stack([speed * xx / r, speed * yy / r], axis=-1)
        if inside.any():
            out[inside] = syn.glacier_velocity(np.column_stack([xx[inside], yy[inside]]))
        out[sea] = np.nan
    else:
        out = 3000.0 - 2000.0 * (r / COAST) ** 2
        if inside.any():
            out[inside] = syn.glacier_thickness(np.column_stack([xx[inside], yy[inside]]))
        out[sea] = np.nan
    return out


def write_full_size(root: Path, bedmap_gb: float) -> None:
    import dask.array as da

    from iceviz.data import product_files as pf

    root.mkdir(parents=True, exist_ok=True)
    vel = root / "antarctica_ice_velocity_450m_v2.nc"
    if not vel.exists():
        x = -2_800_000.0 + SPACING_V * np.arange(EDGE_V)
        y = x[::-1].copy()
        xs, ys = da.from_array(x, chunks=CHUNK), da.from_array(y, chunks=CHUNK)

        def block(yb, xb, k):
            return _field(xb, yb, "velocity")[..., k].astype(np.float32)

        vx = da.blockwise(block, "yx", ys, "y", xs, "x", k=0, dtype=np.float32)
        vy = da.blockwise(block, "yx", ys, "y", xs, "x", k=1, dtype=np.float32)
        t = time.perf_counter()
        pf.write_measures(vel.with_suffix(".tmp"), x, y, vx, vy, latlon=False, compress=False)
        os.replace(vel.with_suffix(".tmp"), vel)
        print(f"wrote {vel} ({vel.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    bm = root / "BedMachineAntarctica-v3.nc"
    if not bm.exists():
        x = (-3_333_000 + SPACING_B * np.arange(EDGE_B)).astype(np.int32)
        y = x[::-1].copy()
        xs = da.from_array(x.astype(np.float64), chunks=CHUNK)
        ys = da.from_array(y.astype(np.float64), chunks=CHUNK)
        h = da.blockwise(lambda yb, xb: _field(xb, yb, "thickness"), "yx", ys, "y", xs, "x", dtype=np.float64)
        s = h * 0.0 + 1500.0
        t = time.perf_counter()
        pf.write_bedmachine(bm.with_suffix(".tmp"), x, y, h, s, compress=False)
        os.replace(bm.with_suffix(".tmp"), bm)
        print(f"wrote {bm} ({bm.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    survey = root / "bedmap"
    if not survey.exists():
        write_bedmap(survey.with_suffix(".tmp"), bedmap_gb)
        os.replace(survey.with_suffix(".tmp"), survey)


def write_bedmap(folder: Path, gb: float) -> None:
    """Campaign files of straight 25 m-sampled lines; a few cross the Byrd box, as real campaigns do."""
    from iceviz.data import product_files as pf

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    written, k = 0, 0
    t = time.perf_counter()
    while written < gb * 1e9:
        lines, ids = [], []
        for j in range(40):
            centre = rng.uniform(-2e6, 2e6, 2) if j % 8 else rng.uniform([420e3, -930e3], [580e3, -770e3])
            theta = rng.uniform(0, np.pi)
            s = np.arange(-150e3, 150e3, 25.0)
            lines.append(centre + s[:, None] * [np.cos(theta), np.sin(theta)])
            ids.append(np.full(s.size, j))
        xy, line = np.concatenate(lines), np.concatenate(ids)
        keep = np.hypot(*xy.T) < COAST
        xy, line = xy[keep], line[keep]
        h = _field_points(xy)
        frame = pf.survey_frame(xy, line, h, np.full(len(xy), 1500.0), prefix=f"{2000 + k}")
        path = pf.write_bedmap_csv(folder / f"SYN_{2000 + k}_CAMPAIGN{k}_AIR_BM3.csv", frame)
        written += path.stat().st_size
        k += 1
    print(f"wrote {k} Bedmap files ({written / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", file=sys.stderr)


def _field_points(xy: np.ndarray) -> np.ndarray:
    from iceviz.data import synthetic as syn

    r = np.hypot(xy[:, 0], xy[:, 1])
    h = 3000.0 - 2000.0 * (r / COAST) ** 2
    inside = (xy[:, 0] >= BYRD[0]) & (xy[:, 0] <= BYRD[1]) & (xy[:, 1] >= BYRD[2]) & (xy[:, 1] <= BYRD[3])
    h[inside] = syn.glacier_thickness(xy[inside])
    return h


def peak_mb() -> float:
    """This process's resident-memory high-water mark (VmHWM; getrusage's maxrss survives exec from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def task(name: str, root: Path, repeats: int) -> dict:
    """One measurement in this (fresh) process."""
    out: dict = {"task": name}
    if name == "add":
        from iceviz.data.products import add_paths

        t = time.perf_counter()
        found, problems = add_paths([root])
        out.update(seconds=time.perf_counter() - t, files=len(found), problems=problems)
    elif name == "build":
        import scipy.interpolate  # noqa: F401  (the builder's imports, so that the baseline holds them)
        import scipy.spatial  # noqa: F401

        from iceviz.data.builder import build_region  # noqa: F401
        from iceviz.data.specs import load_problem

        out["rss_before_mb"] = peak_mb()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            p = load_problem("region:byrd")
            times.append(time.perf_counter() - t)
        out.update(seconds=times, median_s=statistics.median(times), train=len(p.train), test=len(p.test),
                   direction=len(p.direction.xy))
    elif name == "eager":
        import xarray as xr

        t = time.perf_counter()
        with xr.open_dataset(root / "antarctica_ice_velocity_450m_v2.nc") as ds:
            total = float(ds["VX"].values.nbytes + ds["VY"].values.nbytes)
        out.update(seconds=time.perf_counter() - t, bytes=total)
    elif name == "map":
        from iceviz.data.overview import SpeedPyramid
        from iceviz.viz.velocity_map import speed_image

        t = time.perf_counter()
        pyramid = SpeedPyramid(root / "antarctica_ice_velocity_450m_v2.nc")
        pyramid.prepare()
        out["levels_seconds"] = time.perf_counter() - t
        views = {"continent": pyramid.footprint, "1000 km": (0.0, 1e6, -1.4e6, -0.4e6),
                 "200 km": BYRD, "50 km": (475e3, 525e3, -875e3, -825e3)}
        out["render_s"] = {}
        for label, b in views.items():
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                speed_image(pyramid, b)
                times.append(time.perf_counter() - t)
            out["render_s"][label] = statistics.median(times)
        pyramid.close()
    out["peak_rss_mb"] = peak_mb()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/iceviz-fullsize"))
    ap.add_argument("--bedmap-gb", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.task:
        print(json.dumps(task(args.task, args.dir, args.repeats)))
        return
    from benchmarks.common import machine, write_json  # torch comes with it: not in the measured tasks

    write_full_size(args.dir, args.bedmap_gb)
    for stale in ("config", "cache"):  # cold start: no settings, no Bedmap indexes, no speed levels
        shutil.rmtree(args.dir / stale, ignore_errors=True)
    env = {**os.environ, "ICEVIZ_CONFIG_DIR": str(args.dir / "config"), "ICEVIZ_CACHE": str(args.dir / "cache")}
    results = []
    for name in ("add", "build", "eager", "map"):
        cmd = [sys.executable, "-m", "benchmarks.real_data", "--dir", str(args.dir), "--repeats",
               str(args.repeats), "--task", name]
        res = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        print(json.dumps(res), file=sys.stderr)
        results.append(res)
    sizes = {p.name: p.stat().st_size for p in args.dir.glob("*.nc")}
    sizes["bedmap (all CSVs)"] = sum(p.stat().st_size for p in (args.dir / "bedmap").glob("*.csv"))
    write_json(args.json, {"benchmark": "real_data", "machine": machine(), "file_bytes": sizes, "results": results})


if __name__ == "__main__":
    main()
