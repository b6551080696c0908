"""The GPU check: on a lent GPU machine, the CUDA-relevant tests and the headline figures, one JSON of results.

Run it through ``benchmarks/gpu_check.sh`` (which first installs, where they are missing, the packages that
``benchmarks/gpu_prepare.sh`` downloaded as wheels into ``.whl/``):

    bash benchmarks/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR] [--parts facts,tests,...]

Every part runs in its own process group with a time budget, so a crash, a hang or a failure of one part is
recorded in the JSON and the others still run; a part that runs out of time keeps what it had written, and
no part starts after the check's total budget is spent (``--budget``; by default the sum of the parts': 475 s,
about 8 minutes with the install, on a GPU machine; 235 s with ``--quick``). The parts, in order, and their
budgets in seconds (full run / ``--quick``):

- ``facts`` (25 / 20): Python, torch, CUDA, the GPU, the packages and where they import from, and a square fp32
  matrix product's throughput on the device (TFLOP/s).
- ``tests`` (60 / 45): pytest on the CUDA-relevant test files (those that mention CUDA, GPUs, MPS or the device
  choice), with the Byrd and DIFFICE data found under the data folder.
- ``byrd`` (95 / 30): dfNN on Byrd Glacier as ``benchmarks/byrd_table.py`` measures it (seeds 0, 1, 2, at most
  20 s each, weights kept on the validation tiles, no refit): the test RMSE in scaled units.
- ``cli`` (45 / 30): ``iceviz train dfnn --data byrd-mcor:... --seconds 20 --json --out DIR`` on the device (its
  worker process, outputs and the product's defaults, refit included; ``--quick``: synthetic:curve, 5 epochs),
  then the checkpoint reloaded on the device and on the CPU: the largest difference of their predictions.
- ``viscosity`` (85 / 30): the viscosity PINN on SynData_exp1 for 60 s (seed 0): μ relative error.
- ``ensemble`` (75 / 40): ``iceviz sim ensemble`` of the default emulator ensemble (8 melt rates, 20 years, one
  worker per run up to 8 and one thread each; the spin-up comes from the data folder's cache when it is
  there): its wall time.
- ``emulator`` (90 / 40): EGCN on that ensemble (40 epochs, at most 60 s), scored on the held-out runs, and
  its rollout against the simulator's recorded wall time: thickness RMSE and speed-up.

With ``--quick`` every part is cut down (one seed, seconds instead of minutes, a 144-node ensemble) so that the
whole check runs in about a minute on a CPU: the end-to-end test of this script.

``--emulate-image`` (for testing here) hides, in every process of the check, each installed package that is
neither on the GPU machines' image (:data:`IMAGE_PACKAGES`) nor carried as a wheel (:data:`CARRIED`): a part
that needs a package the GPU machine would lack then fails here too.

The JSON (``--out DIR``, else ``$OUT``, else ``runs/gpu-check``; ``gpu_check.json`` beside ``gpu_check.log``,
every part's output, and ``pytest.log``; the parts' own files go to a temporary folder, ``--keep-work``):
``{"benchmark", "device", "quick", "started", "wall_time", "budget_s", "machine", "install", "data",
"parts": {NAME: {"status": "ok" | "failed" | "timeout" | "skipped", "seconds", "budget_s", "figure":
{"name", "value", "unit"}, "figures": {...}, "error", ...}}, "failed": [NAMES]}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]

CARRIED = {
    # What the check needs that the GPU image lacks (found with --emulate-image: every part ran with these and
    # nothing else beyond the image), pinned to the versions the project was tested with; gpu_prepare.sh
    # downloads exactly these (cp312 manylinux, abi3 or pure-Python wheels, 26 MB together).
    "param": "2.4.2",  # the hyper-parameter classes of every trainer
    "scikit-fem": "12.0.2",  # the simulator (and the emulator trainer's mesh operators)
    "triangle": "20250106",  # the simulator's meshes
    "pyproj": "3.7.2",  # EPSG:3031 in the CLI's prediction.nc and iceviz.geo (imported by `iceviz sim ensemble`)
    "netCDF4": "1.7.5.1.post1",  # the simulator's NETCDF4 run files (xarray's engine; h5netcdf is not there either)
    "cftime": "1.6.6.1",  # netCDF4's dependency
    # the Dask runtime (`iceviz sim ensemble --workers N` runs on a local Dask cluster) and what of its
    # dependencies the image lacks (it has click, cloudpickle, fsspec, jinja2, msgpack, psutil, pyyaml,
    # sortedcontainers, toolz and urllib3)
    "dask": "2026.8.0",
    "distributed": "2026.8.0",
    "partd": "1.4.2",
    "locket": "1.0.0",
    "tblib": "3.2.2",
    "tornado": "6.6.1",
    "zict": "3.0.0",
}
"""Wheels carried to the GPU machine (see benchmarks/gpu_prepare.sh)."""

CARRIED_MODULES = {"param": "param", "scikit-fem": "skfem", "triangle": "triangle", "pyproj": "pyproj",
                   "netCDF4": "netCDF4", "cftime": "cftime", "dask": "dask", "distributed": "distributed",
                   "partd": "partd", "locket": "locket", "tblib": "tblib", "tornado": "tornado", "zict": "zict"}
"""The module each carried distribution is imported as (gpu_check.sh installs the wheels when one fails)."""

IMAGE_PACKAGES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
""".split()
"""The Python packages of the GPU machines' image ('cuda'), as read on one on 2026-11-17
(/work/.library/device/KINDS.md): Python 3.12.3, torch 2.11.0+cu130, numpy 2.5.2."""

REPO_MODULES = ("iceviz", "benchmarks", "tests", "conftest")

CPU_REFERENCE = {
    # the CPU figures of BENCHMARKS.md (2-core AMD EPYC VM, one torch thread unless said), for side by side
    "byrd": {"rmse": 0.365, "epochs_in_20s": 112, "published_rmse": 0.391,
             "source": "BENCHMARKS.md, Flux on Byrd Glacier: dfnn, mean of 3 seeds, <= 20 s, one thread"},
    "viscosity": {"mu_rel_error": 0.0505, "steps_in_60s": 1856, "ms_per_step": 32.4,
                  "source": "benchmarks/results/viscosity_budgets.json: seed 0, 60 s, one thread"},
    "emulator": {"rmse_h": 6.66, "rmse_v": 10.45, "speedup": 42.0, "train_seconds": 300.0,
                 "source": "BENCHMARKS.md, Equal epochs (40): EGCN, median of 5 seeds, 2 threads"},
}

RESULT = "GPU_CHECK_RESULT "
"""The prefix of the one line on which a part's process reports its result."""

SELECT = re.compile(r"cuda|gpu|\bmps\b|available_devices|resolve_device", re.IGNORECASE)
"""A test file that mentions one of these is CUDA-relevant."""
QUICK_SELECT = re.compile(r"device|cuda|gpu|mps", re.IGNORECASE)
"""With --quick, only the files whose name says so."""

SKIP_TEST_DIRS = ("browser", "app", "benchmarks")
"""Test folders not run: the browser and app tests need Playwright and Panel, and this script's own test."""


# --- the parts ---------------------------------------------------------------------------------------------------

class Part:
    def __init__(self, name: str, full: float, quick: float, run: Callable[[argparse.Namespace, dict], None]):
        self.name, self.full, self.quick, self.run = name, full, quick, run

    def budget(self, quick: bool) -> float:
        return self.quick if quick else self.full


def _save(args: argparse.Namespace, result: dict) -> None:
    """Write what a part has so far (the parent reads it back even when the part runs out of time)."""
    path = Path(args.work) / f"{args.part}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=_plain))
    tmp.replace(path)


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays, paths and the like."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _figure(result: dict, name: str, value: float, unit: str) -> None:
    result["figure"] = {"name": name, "value": float(value), "unit": unit}


def _torch(args: argparse.Namespace) -> Any:
    import torch

    torch.set_num_threads(1)  # the headline protocol (one CPU thread); on a GPU it only bounds the host side
    return torch


def _sync(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def part_facts(args: argparse.Namespace, result: dict) -> None:
    torch = _torch(args)
    from importlib import metadata

    from iceviz.training.device import available_devices, resolve_device

    m: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable,
                         "platform": platform.platform(), "cores": os.cpu_count(), "cpu": _cpu_name(),
                         "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                         "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                         "cuda_available": torch.cuda.is_available(), "devices_offered": available_devices(),
                         "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        m["gpus"] = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            m["gpus"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                              "memory_gib": round(p.total_memory / 2**30, 1),
                              "multiprocessors": p.multi_processor_count})
        m["matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
        m["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
    packages = {}
    for name in ("numpy", "scipy", "xarray", "pandas", "safetensors", "tqdm", "pytest", *CARRIED):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    m["packages"] = packages
    m["carried_from"] = {}
    for dist, module in CARRIED_MODULES.items():
        try:
            mod = __import__(module)
            m["carried_from"][dist] = str(Path(mod.__file__).parent.parent)
        except ImportError as err:
            m["carried_from"][dist] = f"not importable: {err}"
    result["machine"] = m
    _save(args, result)

    device = resolve_device(args.device)
    n = 1024 if args.quick or device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    (a @ b).sum().item()  # warm-up
    _sync(torch, args.device)
    reps = 3 if device.type == "cpu" else 20
    t0 = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    _sync(torch, args.device)
    seconds = (time.perf_counter() - t0) / reps
    assert math.isfinite(float(c.sum())), "a matrix product of random numbers is not finite"
    _figure(result, "fp32_matmul", 2 * n**3 / seconds / 1e12, "TFLOP/s")
    result["matmul_n"] = n


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def selected_tests(quick: bool = False) -> list[str]:
    """The CUDA-relevant test files: under tests/, not in :data:`SKIP_TEST_DIRS`, mentioning :data:`SELECT`
    (``quick``: only those whose name does, such as test_device.py)."""
    found = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[1] in SKIP_TEST_DIRS:
            continue
        if (QUICK_SELECT.search(path.stem) if quick else SELECT.search(path.read_text(errors="replace"))):
            found.append(str(rel))
    return found


def part_tests(args: argparse.Namespace, result: dict) -> None:
    import xml.etree.ElementTree as ET

    files = selected_tests(args.quick)
    result["files"] = files
    junit = Path(args.work) / "pytest.xml"
    env = {**os.environ, "ICEVIZ_SHARED_DATA": args.data, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-o",
           "console_output_style=classic", f"--junitxml={junit}", *files]
    result["command"] = " ".join(cmd[1:])
    _save(args, result)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=max(5.0, args.budget - 10))
    result["pytest_seconds"] = time.perf_counter() - t0
    result["exit_code"] = proc.returncode
    result["output_tail"] = (proc.stdout + proc.stderr)[-3000:]
    (Path(args.work) / "pytest.log").write_text(proc.stdout + proc.stderr)
    if not junit.exists():
        raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}): {result['output_tail'][-800:]}")
    suites = ET.parse(junit).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    problems = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for bad in list(case):
            if bad.tag in ("failure", "error"):
                problems.append(f"{case.get('classname')}::{case.get('name')}: {(bad.get('message') or '')[:300]}")
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    result.update(counts, passed=passed, problems=problems[:20])
    _figure(result, "passed", passed, "tests")
    result["figures"] = {"failed": counts["failures"] + counts["errors"], "skipped": counts["skipped"]}
    if proc.returncode not in (0, 5) or problems:
        raise RuntimeError(f"{len(problems)} of {counts['tests']} tests failed: " + "; ".join(problems[:3]))


def part_byrd(args: argparse.Namespace, result: dict) -> None:
    import statistics

    _torch(args)
    from iceviz.data.specs import load_problem
    from iceviz.training.trainers import make_trainer

    seeds, seconds = ((0,), 1.0) if args.quick else ((0, 1, 2), 20.0)
    problem = load_problem(f"byrd-mcor:{Path(args.data) / 'byrd_mcor'}")
    result.update(model="dfnn", seconds_per_seed=seconds, seeds=list(seeds), refit=False, runs=[],
                  cpu_reference=CPU_REFERENCE["byrd"])
    for seed in seeds:
        trainer = make_trainer("dfnn", problem, device=args.device, seed=seed, epochs=1_000_000, seconds=seconds,
                               refit=False)
        fit = trainer.fit()
        result["runs"].append(dict(seed=seed, epochs=fit.epochs, seconds=fit.seconds, best_epoch=fit.best_epoch,
                                   stop_reason=fit.stop_reason, epochs_per_second=fit.epochs / max(fit.seconds, 1e-9),
                                   **{k: fit.metrics[k] for k in ("rmse", "mae", "mad", "rmse_phys", "mad_phys")}))
        runs = result["runs"]
        _figure(result, "rmse_mean", statistics.fmean(r["rmse"] for r in runs), "scaled (x 70,000 m²/yr)")
        result["figures"] = {"mad_mean": statistics.fmean(r["mad"] for r in runs),
                             "epochs_mean": statistics.fmean(r["epochs"] for r in runs),
                             "epochs_per_second": statistics.fmean(r["epochs_per_second"] for r in runs)}
        _save(args, result)


def _cli(args: argparse.Namespace, argv: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python -m iceviz.cli ARGV`` and return its final JSON line (RuntimeError with its output if none)."""
    proc = subprocess.run([sys.executable, "-m", "iceviz.cli", *argv], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"iceviz {' '.join(argv[:2])} exited {proc.returncode}: "
                           f"{(proc.stdout + proc.stderr)[-1500:]}")
    return json.loads(lines[-1])


def part_cli(args: argparse.Namespace, result: dict) -> None:
    torch = _torch(args)
    import numpy as np

    out = Path(args.work) / "cli-dfnn"
    shutil.rmtree(out, ignore_errors=True)
    data, budget = (("synthetic:curve", ["--epochs", "5"]) if args.quick
                    else (f"byrd-mcor:{Path(args.data) / 'byrd_mcor'}", ["--seconds", "20"]))
    argv = ["train", "dfnn", "--data", data, "--device", args.device, *budget, "--seed", "0", "--json", "--quiet",
            "--out", str(out)]
    result["command"] = "iceviz " + " ".join(argv)
    _save(args, result)
    t0 = time.perf_counter()
    summary = _cli(args, argv, timeout=max(5.0, args.budget - 15))
    result["cli_seconds"] = time.perf_counter() - t0
    result["summary"] = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    _figure(result, "rmse", summary["rmse"], "field units" if args.quick else "scaled (x 70,000 m²/yr)")
    result["figures"] = {"epochs": summary.get("epochs"), "seconds": summary.get("seconds")}
    result["files"] = sorted(p.name for p in out.iterdir())
    _save(args, result)
    if summary.get("device", "").split(":")[0] != args.device.split(":")[0]:
        raise RuntimeError(f"asked for --device {args.device}, the run reports {summary.get('device')!r}")

    from iceviz.training.checkpoint import load_checkpoint

    xy = np.random.default_rng(0).uniform(-1, 1, size=(2000, 2))
    preds = {}
    for device in dict.fromkeys((args.device, "cpu")):
        ck = load_checkpoint(out / "model.safetensors", device=device)
        where = {p.device.type for p in ck.model.parameters()}
        if where != {torch.device(device).type}:
            raise RuntimeError(f"checkpoint loaded for {device} has parameters on {where}")
        x = torch.as_tensor(xy, dtype=torch.float32, device=device).requires_grad_(True)
        preds[device] = ck.model(x).detach().double().cpu().numpy()
    scale = max(float(np.abs(preds["cpu"]).max()), 1e-12)
    diff = max(float(np.abs(p - preds["cpu"]).max()) for p in preds.values()) / scale
    result["figures"]["reload_max_rel_difference"] = diff
    if not (np.isfinite(diff) and diff < 1e-3):
        raise RuntimeError(f"the checkpoint predicts differently on {args.device} and the CPU: {diff:.3g}")


def part_viscosity(args: argparse.Namespace, result: dict) -> None:
    _torch(args)
    from iceviz.data.specs import load_problem
    from iceviz.training.trainers import make_trainer

    seconds = 2.0 if args.quick else 60.0
    spec = f"diffice:{Path(args.data) / 'diffice' / 'SynData_exp1.mat'}"
    result.update(model="viscosity-pinn", data=spec, seconds_budget=seconds, seed=0,
                  cpu_reference=CPU_REFERENCE["viscosity"])
    problem = load_problem(spec)
    trainer = make_trainer("viscosity-pinn", problem, device=args.device, seconds=seconds, epochs=1_000_000, seed=0)
    fit = trainer.fit()
    m = fit.metrics
    result.update(steps=fit.steps, train_seconds=fit.seconds, ms_per_step=1000 * fit.seconds / max(1, fit.steps),
                  metrics={k: v for k, v in m.items() if isinstance(v, (int, float))})
    _figure(result, "mu_rel_error", m["mu_rel_error"], "fraction")
    result["figures"] = {"ms_per_step": result["ms_per_step"], "steps": fit.steps,
                         **{k: m[k] for k in ("u_rel_error", "v_rel_error", "h_rel_error") if k in m}}


QUICK_ENSEMBLE = ["--melt", "0:80:20", "--years", "4", "--snapshot-every", "0.5", "--set", "resolution=40000",
                  "--set", "refined_resolution=20000", "--set", "spin_up_years=20"]
"""The tests' small ensemble (tests/conftest.py SMALL_ENSEMBLE): 144 nodes, five melt rates, 4 years."""


def part_ensemble(args: argparse.Namespace, result: dict) -> None:
    work = Path(args.work)
    cache = work / "cache"
    carried = Path(args.data) / "cache" / "sim"
    if carried.is_dir():  # the spin-up computed where the check was prepared: the same key, no 100-year spin-up
        (cache / "sim").mkdir(parents=True, exist_ok=True)
        for f in carried.glob("spinup-*.npz"):
            shutil.copy2(f, cache / "sim" / f.name)
    out = work / "ensemble"
    shutil.rmtree(out, ignore_errors=True)
    workers = 1 if args.quick else max(1, min(8, (os.cpu_count() or 2) - 1))
    grid = QUICK_ENSEMBLE if args.quick else ["--melt", "0:70:10"]
    argv = ["sim", "ensemble", "marine-glacier", *grid, "--workers", str(workers), "--json", "--quiet",
            "--out", str(out)]
    result["command"] = "iceviz " + " ".join(argv)
    result["spin_up_carried"] = sorted(f.name for f in (cache / "sim").glob("*.npz")) if carried.is_dir() else []
    _save(args, result)
    one_thread = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}  # a core a run
    summary = _cli(args, argv, env={"ICEVIZ_CACHE": str(cache), **one_thread}, timeout=max(5.0, args.budget - 5))
    manifest = json.loads((out / "manifest.json").read_text())
    runs = [r for r in manifest["runs"] if r["status"] == "done"]
    result.update(summary=summary, nodes=manifest.get("nodes"), spin_up=manifest.get("spin_up"),
                  run_seconds=[r["wall_time"] for r in runs])
    _figure(result, "wall_time", summary["wall_time"], "s")
    result["figures"] = {"runs": summary["runs"], "failed": summary["failed"], "workers": summary["workers"],
                         "run_seconds_mean": sum(result["run_seconds"]) / max(1, len(runs))}
    if summary["failed"]:
        raise RuntimeError(f"{summary['failed']} of {summary['runs']} simulator runs failed")


def part_emulator(args: argparse.Namespace, result: dict) -> None:
    _torch(args)
    from iceviz.data.specs import load_problem
    from iceviz.training.trainers import make_trainer

    for where in (Path(args.work) / "ensemble", Path(args.data) / "ensemble"):
        if (where / "manifest.json").is_file():
            break
    else:
        raise RuntimeError("no ensemble: the ensemble part did not make one and the data folder holds none")
    epochs, seconds = (2, 5.0) if args.quick else (40, 60.0)
    problem = load_problem(f"sim:{where}")
    result.update(model="egcn", data=str(where), epochs_budget=epochs, seconds_budget=seconds, seed=0,
                  runs=problem.n_runs, nodes=problem.mesh.n_nodes, snapshots=len(problem.times),
                  cpu_reference=CPU_REFERENCE["emulator"])
    _save(args, result)
    trainer = make_trainer("egcn", problem, device=args.device, seed=0, epochs=epochs, seconds=seconds)
    fit = trainer.fit()
    m = fit.metrics
    keys = ("rmse_h", "rmse_v", "r", "r_change_h", "r_change_v", "gl_error_final", "speedup", "emulator_seconds",
            "simulator_seconds", "break_even_rollouts")
    result.update(epochs=fit.epochs, train_seconds=fit.seconds, metrics={k: m[k] for k in keys if k in m})
    _figure(result, "rmse_h", m["rmse_h"], "m")
    result["figures"] = {k: m[k] for k in ("rmse_v", "speedup", "emulator_seconds") if k in m}
    result["figures"]["train_seconds"] = fit.seconds


PARTS = [
    Part("facts", 25, 20, part_facts),
    Part("tests", 60, 45, part_tests),
    Part("byrd", 95, 30, part_byrd),
    Part("cli", 45, 30, part_cli),
    Part("viscosity", 85, 30, part_viscosity),
    Part("ensemble", 75, 40, part_ensemble),
    Part("emulator", 90, 40, part_emulator),
]
BY_NAME = {p.name: p for p in PARTS}


def run_part(args: argparse.Namespace) -> int:
    """In a part's own process: run it, write and print its result."""
    result: dict[str, Any] = {}
    args.budget = args.budget or BY_NAME[args.part].budget(args.quick)
    args.work = args.work or tempfile.mkdtemp(prefix="gpu-check-part-")
    try:
        BY_NAME[args.part].run(args, result)
        result["status"] = "ok"
    except BaseException as err:  # noqa: BLE001 - everything a part can raise is reported, not raised
        import traceback

        result["status"] = "failed"
        result["error"] = f"{type(err).__name__}: {err}"[:2000]
        result["traceback"] = traceback.format_exc()[-3000:]
    _save(args, result)
    print(RESULT + json.dumps({"status": result["status"]}), flush=True)
    return 0


# --- the driver --------------------------------------------------------------------------------------------------

def allowed_modules() -> list[str]:
    """Top-level modules of the installed distributions that are on the GPU image or carried."""
    from importlib import metadata

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    keep = {norm(n) for n in IMAGE_PACKAGES} | {norm(n) for n in CARRIED}
    if sys.version_info < (3, 12):  # dask needs the importlib.metadata backport (and its own needs) below Python
        keep |= {"importlib-metadata", "zipp", "lazy-importer"}  # 3.12 only, not on the GPU image's 3.12
    found = set(REPO_MODULES)
    for module, dists in metadata.packages_distributions().items():
        if any(norm(d) in keep for d in dists):
            found.add(module)
    return sorted(found)


SITECUSTOMIZE = '''\
"""gpu_check --emulate-image: only the standard library, the GPU image's packages and the carried ones import;
any other installed package is not found, as on the GPU machine (each one asked for is listed in a file)."""
import os
import sys
from importlib.machinery import PathFinder

_ALLOWED = frozenset(os.environ.get("GPU_CHECK_ALLOWED_MODULES", "").split(","))
_LOG = os.environ.get("GPU_CHECK_HIDDEN_LOG")


class _ImageOnly:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def find_spec(self, name, path=None, target=None):
        if path is None and name not in _ALLOWED and name not in sys.stdlib_module_names and name[:1] != "_":
            if _LOG:
                with open(_LOG, "a") as f:
                    f.write(name + "\\n")
            return None
        return self.inner.find_spec(name, path, target)


sys.meta_path[:] = [_ImageOnly(f) if f is PathFinder else f for f in sys.meta_path]
'''


def check_imports() -> int:
    """Exit status 0 when every carried package imports (gpu_check.sh then installs nothing)."""
    missing = []
    for module in CARRIED_MODULES.values():
        try:
            __import__(module)
        except Exception as err:  # noqa: BLE001 - a broken install is as missing as an absent one
            missing.append(f"{module} ({type(err).__name__}: {err})")
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
    return 1 if missing else 0


def default_data() -> Path:
    """``.gpu-data`` (what gpu_prepare.sh copied) when it is there, else the shared data folder."""
    if (REPO / ".gpu-data").is_dir():
        return REPO / ".gpu-data"
    return Path(os.environ.get("ICEVIZ_SHARED_DATA", REPO.parent / "shared" / "data"))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def drive(args: argparse.Namespace) -> int:
    started = time.time()
    out = Path(args.out or os.environ.get("OUT") or REPO / "runs" / "gpu-check").expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-")).resolve()  # not under $OUT: only 8 files return
    work.mkdir(parents=True, exist_ok=True)
    names = args.parts.split(",") if args.parts else [p.name for p in PARTS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; the parts are {[p.name for p in PARTS]}")
    budget = args.budget or sum(BY_NAME[n].budget(args.quick) for n in names)
    deadline = time.monotonic() + budget

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ICEVIZ_CACHE": str(work / "cache"),
           "ICEVIZ_CONFIG_DIR": str(work / "config")}  # nothing read from or left in the user's folders
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if args.emulate_image:
        shim = work / "emulate-image"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join((str(shim), env["PYTHONPATH"]))
        env["GPU_CHECK_ALLOWED_MODULES"] = ",".join(allowed_modules())

    report: dict[str, Any] = {
        "benchmark": "gpu_check", "device": args.device, "quick": args.quick,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "budget_s": budget,
        "emulate_image": args.emulate_image, "data": str(args.data), "parts": {},
        "install": {"status": os.environ.get("GPU_CHECK_INSTALL", "not run (gpu_check.py called directly)"),
                    "seconds": float(os.environ.get("GPU_CHECK_INSTALL_SECONDS") or 0) or None},
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(), "cpu": _cpu_name(),
                    "host": platform.node()},
    }
    log = open(out / "gpu_check.log", "w")

    def write() -> None:
        report["wall_time"] = time.time() - started
        report["failed"] = [n for n, r in report["parts"].items() if r.get("status") != "ok"]
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=_plain) + "\n")

    for name in names:
        part = BY_NAME[name]
        left = deadline - time.monotonic()
        timeout = min(part.budget(args.quick), left)
        entry: dict[str, Any] = {"budget_s": part.budget(args.quick)}
        if timeout < 2:
            entry.update(status="skipped", error=f"out of time: {left:.0f} s of the check's {budget:.0f} s left")
            report["parts"][name] = entry
            write()
            continue
        print(f"gpu_check: {name} (at most {timeout:.0f} s)", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--part", name, "--device", args.device,
               "--data", str(args.data), "--work", str(work), "--budget", str(timeout)]
        if args.quick:
            cmd.append("--quick")
        saved = work / f"{name}.json"
        saved.unlink(missing_ok=True)  # no stale result from an earlier check in the same folder
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            try:
                output, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:  # a process outside the group holds the pipe
                proc.kill()
                output = ""
            timed_out = True
        _kill_group(proc)  # anything the part left running in its group
        wall = time.monotonic() - t0
        if saved.is_file():
            entry.update(json.loads(saved.read_text()))
        entry["seconds"] = wall  # the part's wall time, its process's start and end included
        if timed_out:
            entry.update(status="timeout", error=f"no result within {timeout:.0f} s (what it had saved is kept)")
        elif RESULT not in output:
            entry.update(status="failed", error=f"the part's process exited {proc.returncode} without a result: "
                                                f"{output[-1500:]}")
        if name == "facts" and "machine" in entry:
            report["machine"].update(entry.pop("machine"))
        if name == "tests" and (work / "pytest.log").is_file():
            shutil.copy2(work / "pytest.log", out / "pytest.log")
        entry["budget_s"] = part.budget(args.quick)
        report["parts"][name] = entry
        log.write(f"===== {name}: {entry.get('status')} in {entry['seconds']:.1f} s\n{output}\n")
        log.flush()
        figure = entry.get("figure") or {}
        print(f"gpu_check: {name} {entry.get('status')} in {entry['seconds']:.1f} s"
              + (f": {figure['name']} = {figure['value']:.4g} {figure['unit']}" if figure else "")
              + (f" ({entry['error'][:300]})" if entry.get("status") != "ok" and entry.get("error") else ""),
              file=sys.stderr, flush=True)
        write()
    log.close()
    write()
    if not (args.keep_work or args.work):
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"out": str(out / "gpu_check.json"), "wall_time": round(report["wall_time"], 1),
                      "failed": report["failed"],
                      "figures": {n: (r.get("figure") or {}).get("value") for n, r in report["parts"].items()}}))
    return 1 if report["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="every part cut down: about a minute on a CPU")
    parser.add_argument("--out", help="folder for gpu_check.json and gpu_check.log (default $OUT, else runs/gpu-check)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder with byrd_mcor/, diffice/ and cache/sim/ (default .gpu-data, else "
                             "../shared/data)")
    parser.add_argument("--parts", help=f"comma-separated subset of {','.join(p.name for p in PARTS)}")
    parser.add_argument("--budget", type=float, help="seconds for all parts together (default: their budgets' sum)")
    parser.add_argument("--emulate-image", action="store_true",
                        help="hide installed packages that are neither on the GPU image nor carried")
    parser.add_argument("--wheels", action="store_true", help="print the carried wheels as NAME==VERSION and exit")
    parser.add_argument("--check-imports", action="store_true",
                        help="exit 0 when every carried package imports, else 1")
    parser.add_argument("--keep-work", action="store_true", help="keep the parts' working folder (ensemble, runs)")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.wheels:
        print("\n".join(f"{name}=={version}" for name, version in CARRIED.items()))
        return 0
    if args.check_imports:
        return check_imports()
    args.data = (args.data or default_data()).resolve()
    if args.part:
        return run_part(args)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
