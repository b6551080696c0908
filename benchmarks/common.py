"""Helpers shared by the benchmark scripts: machine description, medians, output, the served app in Chromium."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from iceviz.cli import parse_assignments

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BYRD = os.environ.get("ICEVIZ_BYRD_DIR", str(REPO.parent / "shared" / "data" / "byrd_mcor"))


def parse_run_args(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Add ``--set KEY=VALUE`` (hyper-parameter overrides) and ``--json OUT``, parse, pin one torch thread."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    return args, parse_assignments(args.set)


def sweep(runs: list[dict[str, Any]], workers: int, budget: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``runs`` (``{"model", "data", "seed", KEY: value}``) trained as ``iceviz sweep`` trains them:
    on a local Dask cluster of ``workers`` single-threaded workers, ``workers`` at a time, each with ``budget``;
    RuntimeError naming the runs that did not finish."""
    from iceviz.runtime.dask_job import local_client
    from iceviz.training.sweep import run_sweep

    def progress(done: int, total: int) -> None:
        print(f"[{done}/{total}] runs ended", flush=True)

    with local_client(workers) as client:
        rows = run_sweep(runs, client, workers, budget, progress=progress)
    failed = [f"{r['model']} on {r['data']} seed {r['seed']}: {r['status']} {r['error']}" for r in rows
              if r["status"] != "done"]
    if failed:
        raise RuntimeError("runs that did not finish: " + "; ".join(failed))
    return rows


def on_dask(fn: Callable[[Any], Any], tasks: list[Any], workers: int,
            scheduler: str | None = None) -> Iterator[Any]:
    """``fn(task)`` for every task on the runtime's Dask: a new local cluster of ``workers`` single-threaded
    workers, or the cluster at ``scheduler``; the results as the tasks end, in submission order of priority."""
    from distributed import Client, as_completed

    from iceviz.runtime.dask_job import local_client

    with (Client(scheduler, set_as_default=False) if scheduler else local_client(workers)) as client:
        for future in as_completed(client.map(fn, tasks, pure=False), loop=client.loop):
            yield future.result()


def quantiles(values: list[float], digits: int = 3) -> dict[str, float]:
    """Median, 90th percentile (the value at 90 % of the sorted list), maximum and count of ``values``, rounded
    to ``digits``."""
    v = sorted(values)
    return {"median": round(statistics.median(v), digits), "p90": round(v[int(0.9 * (len(v) - 1))], digits),
            "max": round(v[-1], digits), "n": len(v)}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    print(text)


@contextlib.contextmanager
def served_explorer(env: dict[str, str] | None = None, log: Path | None = None,
                    wait_s: float = 90.0) -> Iterator[str]:
    """``panel serve apps/explorer.py`` on a free localhost port (extra ``env``, output to ``log``); yields the
    app's URL once it answers, and stops the server afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = open(log, "w") if log else subprocess.DEVNULL
    server = subprocess.Popen([sys.executable, "-m", "panel", "serve", "apps/explorer.py", "--address", "127.0.0.1",
                               "--port", str(port), "--allow-websocket-origin", f"127.0.0.1:{port}"], cwd=REPO,
                              env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, stdout=out,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/explorer"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                urllib.request.urlopen(url, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"panel serve did not answer within {wait_s:.0f} s") from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(10)
        if log:
            out.close()


def chromium(playwright: Any) -> Any:
    """A headless Chromium context (fresh profile, 1500 × 1000 viewport) from a sync Playwright instance, with the
    browser tests' executable and flags."""
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    return playwright.chromium.launch_persistent_context(tempfile.mkdtemp(), executable_path=CHROMIUM,
                                                         args=CHROMIUM_ARGS, headless=True,
                                                         viewport={"width": 1500, "height": 1000})


def until(predicate: Callable[[], bool], timeout: float, what: str, start: float | None = None) -> float:
    """Seconds from ``start`` (default: now) until ``predicate`` holds, polled every 50 ms; TimeoutError naming
    ``what`` after ``timeout`` seconds."""
    start = time.monotonic() if start is None else start
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - start


@contextlib.contextmanager
def command_line_cluster(workers: int, log: Path, nanny: bool = True) -> Iterator[Any]:
    """A ``distributed.Client`` of ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes
    on 127.0.0.1, started as a user would (``nanny`` False: ``--no-nanny``), their output in ``log``; all ended
    at the end (a worker busy in a task that ignores the terminate is killed)."""
    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with open(log, "w") as out:
        procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--dashboard-address", ":0"], stdout=out, stderr=subprocess.STDOUT)]
        try:
            with Client(address, timeout="30s") as client:
                procs += [subprocess.Popen(["dask", "worker", address, "--nworkers", "1", "--nthreads", "1",
                                            "--host", "127.0.0.1", *([] if nanny else ["--no-nanny"])],
                                           stdout=out, stderr=subprocess.STDOUT) for _ in range(workers)]
                client.wait_for_workers(workers, timeout=120)
                yield client
        finally:
            for proc in procs[::-1]:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)
