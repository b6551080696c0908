"""``iceviz train --out DIR`` never loses or half-writes a run; the CLI's small faults (--threads, Ctrl-C,
--workers) answered in one line."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from iceviz.training import outputs
from iceviz.training.checkpoint import load_checkpoint
from iceviz.training.outputs import LOCK_NAME, OutputError, acquire_lock, claimed_folder

from tests.test_cli import one_json_line, run_main

RUN_FILES = {"model.safetensors", "metrics.json", "prediction.nc"}


def train(out: Path, *extra: str) -> tuple[int, str, str]:
    """A tiny training into ``out``: (exit code, stdout, stderr)."""
    return run_main("train", "dfnn", "--data", "synthetic:curve", "--epochs", "3", "--quiet", "--device", "cpu",
                    "--out", str(out), *extra)


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any data is loaded (so: if training would start)."""
    def load_problem(spec):
        raise AssertionError(f"data {spec!r} loaded: the run was not refused before training")

    monkeypatch.setattr("iceviz.data.specs.load_problem", load_problem)


@pytest.fixture
def sleeper():
    """A live process of this host that is not this one: its pid."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(out: Path, record: object) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    lock.write_text(json.dumps(record) + "\n")
    return lock


# --------------------------------------------------------------------------- an unusable --out: refused first


def test_out_that_is_a_file_is_refused_before_training(tmp_path, no_training):
    out = tmp_path / "run"
    out.write_text("not a folder")
    code, stdout, stderr = train(out)
    assert code == 2 and stdout == ""
    assert stderr.strip() == f"iceviz: error: --out {out} is a file, not a folder: choose another --out"


def test_read_only_out_is_refused_before_training(tmp_path, monkeypatch, no_training):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    try:
        (out / "probe").touch()  # root writes anyway: make the probe's write fail as a read-only folder would
        (out / "probe").unlink()

        def refused(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(outputs, "tempfile", SimpleNamespace(mkstemp=refused))
    except PermissionError:
        pass
    code, stdout, stderr = train(out)
    out.chmod(0o755)
    assert code == 2 and stdout == ""
    assert stderr.strip() == f"iceviz: error: --out {out} is not writable (Permission denied): choose another --out"
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- writing: whole files or none


def test_a_run_folder_holds_the_three_files_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    code, _, stderr = train(out)
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == RUN_FILES  # no lock, probe or temporary file left
    assert oct((out / "metrics.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_write_rescues_the_model_and_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    import iceviz.data.netcdf

    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code, _, stderr = train(out)  # an earlier, complete run
    assert code == 0, stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(ds, path):  # half a file, then the disk is full
        Path(path).write_bytes(b"CDF\x01 truncated")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(iceviz.data.netcdf, "write_netcdf", disk_full)
    code, stdout, stderr = train(out, "--json", "--seed", "7")
    assert code == 1 and "Traceback" not in stderr
    summary = one_json_line(stdout)
    rescued = Path(summary["rescued"])
    assert rescued.parent == tmp_path / "cache" / "rescued" and rescued.name.split("-")[2] == "dfnn"
    assert stderr.strip() == (f"iceviz train: dfnn on synthetic:curve: cannot write the outputs to {out} "
                              f"(OSError: [Errno {errno.ENOSPC}] No space left on device); the trained model was "
                              f"saved to {rescued / 'model.safetensors'} instead (with metrics.json)")
    assert summary["error"] in stderr and summary["seed"] == 7
    assert load_checkpoint(rescued / "model.safetensors").params["seed"] == 7
    assert json.loads((rescued / "metrics.json").read_text())["seed"] == 7
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no partial file, the lock removed


def test_a_rescue_that_fails_too_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "rescue_roots", lambda: (tmp_path / "file" / "a", tmp_path / "file" / "b"))
    (tmp_path / "file").write_text("")

    def failing(path: Path) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with pytest.raises(outputs.SaveError) as caught:
        outputs.save_run(tmp_path, {"model.safetensors": failing}, "dfnn")
    assert caught.value.rescued is None
    assert str(caught.value).endswith(f"the trained model could not be saved anywhere else either (tried "
                                      f"{tmp_path / 'file' / 'a'} and {tmp_path / 'file' / 'b'})")


def test_other_files_are_rescued_by_name(tmp_path, monkeypatch):
    """A sweep's table (no model among its files) is what gets saved elsewhere, and what the message names."""
    monkeypatch.setattr(outputs, "rescue_roots", lambda: (tmp_path / "rescued", tmp_path / "spare"))
    out = tmp_path / "sweep"
    out.mkdir()

    def table(path: Path) -> None:
        if path.parent == out:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        path.write_text("model,rmse\n")

    with pytest.raises(outputs.SaveError) as caught:
        outputs.save_run(out, {"sweep.csv": table, "sweep.json": lambda p: p.write_text("{}")}, "sweep",
                         keep=("sweep.csv", "sweep.json"), what="the sweep's table")
    rescued = caught.value.rescued
    assert (rescued / "sweep.csv").read_text() == "model,rmse\n" and (rescued / "sweep.json").is_file()
    assert str(caught.value).endswith(f"the sweep's table was saved to {rescued / 'sweep.csv'} instead "
                                      "(with sweep.json)")
    assert sorted(p.name for p in out.iterdir()) == []


# --------------------------------------------------------------------------- one run per folder


def test_a_folder_in_use_by_a_live_run_is_refused(tmp_path, sleeper, no_training):
    out = tmp_path / "run"
    lock = write_lock(out, {"pid": sleeper, "host": socket.gethostname(), "started": "2025-01-02 03:04:05"})
    code, stdout, stderr = train(out)
    assert code == 2 and stdout == ""
    assert stderr.strip() == (f"iceviz: error: --out {out} is in use by another iceviz run (pid {sleeper} on this "
                              f"machine, started 2025-01-02 03:04:05; lock {lock}): choose another --out, or wait "
                              f"for that run to end")
    assert json.loads(lock.read_text())["pid"] == sleeper  # the other run's lock is left alone


def test_a_lock_of_another_host_or_of_no_process_is_never_taken_over(tmp_path):
    lock = write_lock(tmp_path, {"pid": dead_pid(), "host": "another-host"})
    with pytest.raises(OutputError, match="pid [0-9]+ on another-host; lock"):
        acquire_lock(tmp_path)
    lock.write_text("")  # a lock being written
    with pytest.raises(OutputError, match="names no process; delete it if no run uses this folder"):
        acquire_lock(tmp_path)


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_removed_at_the_end(tmp_path):
    out = tmp_path / "run"
    write_lock(out, dead_pid())  # a bare pid, as a hand-made lock would hold
    code, _, stderr = train(out)
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == RUN_FILES


def test_the_lock_names_this_run_while_it_runs_and_goes_with_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with claimed_folder(tmp_path) as out:
            held = json.loads((out / LOCK_NAME).read_text())
            raise RuntimeError("training failed")
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_loading_data_prints_one_line_exits_130_and_unlocks(tmp_path, monkeypatch):
    def interrupted(spec):
        raise KeyboardInterrupt

    monkeypatch.setattr("iceviz.data.specs.load_problem", interrupted)
    code, stdout, stderr = train(tmp_path / "run")
    assert (code, stdout, stderr) == (130, "", "iceviz: interrupted\n")
    assert list((tmp_path / "run").iterdir()) == []


# --------------------------------------------------------------------------- the CLI's small faults


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_threads_below_one_is_a_usage_error_before_any_data_is_loaded(threads, no_training):
    code, stdout, stderr = run_main("train", "dfnn", "--data", "synthetic:curve", "--threads", threads)
    assert code == 2 and stdout == ""
    assert stderr.splitlines()[-1] == (f"iceviz train: error: argument --threads: expected a whole number of at "
                                       f"least 1, got '{threads}'")


def test_ctrl_c_during_imports_prints_one_line_and_exits_130(monkeypatch):
    import iceviz.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(iceviz.cli, "build_parser", interrupted)
    assert run_main("models") == (130, "", "iceviz: interrupted\n")


def test_importing_the_entry_point_loads_nothing_heavy():
    """What runs before ``main`` (and its Ctrl-C handler) is the interpreter and the standard library only."""
    code = "import sys, iceviz.cli; print(sorted({'numpy', 'torch'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


@pytest.mark.parametrize("as_json", [False, True])
def test_ensemble_reports_the_workers_it_used(as_json, tmp_path, monkeypatch):
    started = []

    @contextlib.contextmanager
    def dask_client(scheduler, workers):  # the local cluster it would start: one worker per run at most
        started.append(workers)
        yield "client", workers

    def run_ensemble(scenario, overrides, grid, settings, out, progress, client):
        assert client == "client"
        return {"runs": [{"status": "done"}] * 3, "wall_time": 1.0, "workers": started[-1]}

    monkeypatch.setattr("iceviz.cli._dask_client", dask_client)
    monkeypatch.setattr("iceviz.sim.ensemble.run_ensemble", run_ensemble)
    out = tmp_path / "e"
    code, stdout, stderr = run_main("sim", "ensemble", "confined-shelf", "--melt", "0,1,2", "--workers", "10000",
                                    "--out", str(out), *(["--json"] if as_json else []))
    assert code == 0, stderr
    assert started == [3]
    if as_json:
        assert one_json_line(stdout)["workers"] == 3
    else:
        assert stdout.strip() == (f"confined-shelf: 3 of 3 runs done in 1.0 s on 3 worker(s) (--workers 10000 "
                                  f"capped: one worker per run at most) -> {out}")


def test_ensemble_workers_below_one_is_a_usage_error(tmp_path):
    code, _, stderr = run_main("sim", "ensemble", "confined-shelf", "--melt", "0", "--workers", "0",
                               "--out", str(tmp_path / "e"))
    assert code == 2 and "argument --workers: expected a whole number of at least 1, got '0'" in stderr


def test_a_cancelled_run_says_so_once(monkeypatch, capsys):
    import iceviz.cli as cli

    monkeypatch.setattr(cli, "_progress_loop", lambda job, quiet: job.cancel())
    code = cli.main(["train", "dfnn", "--data", "synthetic:curve", "--epochs", "100000", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 130 and err == "iceviz train: dfnn on synthetic:curve cancelled"
