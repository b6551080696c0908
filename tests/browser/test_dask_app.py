"""The app as it is served by default: its jobs on an embedded Dask cluster, shared by every session."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")

from tests.browser.conftest import (CHROMIUM, CHROMIUM_ARGS, deep_text, descendants,  # noqa: E402
                                    playwright_api, serve, shot)
from tests.browser.test_explorer import card_text, keep_models, select, wait_for  # noqa: E402


def test_the_default_server_trains_on_its_dask_cluster_and_frees_a_closed_tabs_slot(tmp_path_factory):
    served = serve(tmp_path_factory, env={"ICEVIZ_EXECUTOR": "dask"})
    url, log, proc = next(served)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            a, b = browser.new_page(viewport={"width": 1500, "height": 1000}), browser.new_page()
            for pg in (a, b):
                pg.goto(url)
                pg.locator(".bk-tab", has_text="Map").first.wait_for(timeout=60_000)
            note = a.locator(".server-note").first
            wait_for(lambda: "an embedded Dask cluster of" in deep_text(note), 90, "the cluster to start")
            workers = descendants(proc.pid)
            assert len(workers) >= 3  # the cluster's worker processes (and their nannies' helpers)
            select(a, "Data", "Synthetic outlet glacier (Byrd box)")
            keep_models(a, ["nn"])
            a.locator("button", has_text="Start training").first.click()
            wait_for(lambda: "epoch" in card_text(a, "nn #") and "running" in card_text(a, "nn #"), 90,
                     "the job to train")
            assert "on Dask worker" in card_text(a, "nn #")
            wait_for(lambda: ": 1 running, 0 waiting" in deep_text(b.locator(".server-note").first), 10,
                     "another session to see the busy slot")
            shot(a, "dask-app-training")
            a.close()  # the tab's session ends: its job is cancelled on the cluster, its slot freed
            wait_for(lambda: ": 0 running, 0 waiting" in deep_text(b.locator(".server-note").first), 30,
                     "the closed tab's slot to be freed")
            assert descendants(proc.pid) >= workers  # the workers stay, for the next job
            browser.close()
    finally:
        next(served, None)  # stops the server; its log must hold no traceback
    wait_for(lambda: not (descendants(proc.pid) | {w for w in workers if _alive(w)}), 30,
             "the cluster's processes to end with the server")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_app_on_an_existing_cluster_reruns_a_job_whose_worker_is_killed(command_line_cluster, tmp_path_factory):
    import os
    import signal

    client = command_line_cluster
    address = client.scheduler.address
    served = serve(tmp_path_factory, env={"ICEVIZ_EXECUTOR": "dask", "ICEVIZ_SCHEDULER": address})
    url, log, proc = next(served)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            a = browser.new_page(viewport={"width": 1500, "height": 1000})
            a.goto(url)
            a.locator(".bk-tab", has_text="Map").first.wait_for(timeout=60_000)
            note = a.locator(".server-note").first
            wait_for(lambda: f"the Dask cluster at {address} (2 workers), 2 at a time" in deep_text(note), 30,
                     "the cluster's description")
            select(a, "Data", "Synthetic outlet glacier (Byrd box)")
            keep_models(a, ["nn"])
            a.locator("button", has_text="Start training").first.click()
            wait_for(lambda: "running" in card_text(a, "nn #") and "epoch" in card_text(a, "nn #"), 90,
                     "the job to train")
            busy = [worker for worker, tasks in client.processing().items() if tasks]
            assert len(busy) == 1
            os.kill(client.run(os.getpid, workers=busy)[busy[0]], signal.SIGKILL)
            wait_for(lambda: "begun again 1x: a worker died" in card_text(a, "nn #"), 60, "the job to begin again")
            wait_for(lambda: "· done ·" in card_text(a, "nn #") or "· cut short ·" in card_text(a, "nn #"), 120,
                     "the job to end")
            shot(a, "dask-app-worker-killed")
            browser.close()
    finally:
        next(served, None)
    assert len(client.scheduler_info()["workers"]) == 1
