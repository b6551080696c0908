"""`iceviz sweep`: models x seeds x --set values x data specs on a local Dask cluster, written as CSV and JSON."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("distributed")

from iceviz.cli import main  # noqa: E402


def test_a_sweep_writes_one_row_per_run_with_its_settings_and_scores(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "dfnn", "nn", "--data", "synthetic:curve", "--seeds", "0,1", "--set", "width=16,32",
                 "--epochs", "3", "--workers", "2", "--quiet", "--json", "--out", str(out)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["runs"] == summary["done"] == 8 and summary["workers"] == 2
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 8 and set(table["model"]) == {"dfnn", "nn"} and set(table["width"]) == {16, 32}
    assert set(table["seed"]) == {0, 1} and (table["status"] == "done").all() and (table["epochs"] == 3).all()
    assert table["rmse"].notna().all() and (table.loc[table["model"] == "dfnn", "mad"] < 1e-4).all()
    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["rows"]) == 8 and doc["rows"][0]["model"] == "dfnn"


def test_a_failing_run_is_a_row_with_its_error_and_bad_settings_stop_before_training(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "dfnn", "--data", "synthetic:curve", "--data", "synthetic:nonsense", "--epochs", "2",
                 "--quiet", "--out", str(out)])
    assert code == 1
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["status"]) == ["done", "failed"] and "nonsense" in table["error"].iloc[1]
    code = main(["sweep", "dfnn", "--data", "synthetic:curve", "--set", "width=abc", "--out", str(tmp_path / "x")])
    assert code == 2 and "width" in capsys.readouterr().err


def test_a_sweep_on_a_command_line_cluster_finishes_every_run_when_a_busy_worker_is_killed(command_line_cluster,
                                                                                          tmp_path):
    import os
    import signal
    import threading
    import time

    client = command_line_cluster
    out, ended = tmp_path / "sweep", {}
    sweep = threading.Thread(target=lambda: ended.setdefault("code", main(
        ["sweep", "dfnn", "nn", "--data", "synthetic:curve", "--seeds", "0,1", "--epochs", "200",
         "--scheduler", client.scheduler.address, "--quiet", "--out", str(out)])))
    sweep.start()
    deadline = time.monotonic() + 60
    while not any(client.processing().values()):
        assert time.monotonic() < deadline, "no run started"
        time.sleep(0.05)
    time.sleep(1.0)  # mid-run
    busy = [worker for worker, tasks in client.processing().items() if tasks]
    os.kill(client.run(os.getpid, workers=busy[:1])[busy[0]], signal.SIGKILL)
    sweep.join(300)
    assert ended["code"] == 0  # the killed worker's run ran again on the other
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 4 and (table["status"] == "done").all()
    assert len(client.scheduler_info()["workers"]) == 1
