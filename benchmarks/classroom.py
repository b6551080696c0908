"""A class on one server: browser pages all start the lesson; click latency meanwhile, and what the server holds.

Serves the explorer (with its default executor, the embedded Dask cluster, unless ``--executor``), opens
``--pages`` pages in one headless Chromium and has every one start the lesson (dfNN and PINN on the curve
field) within seconds of the others. Until every lesson has ended it clicks Pause, then Resume, on whichever
page has a running lesson card, timing each click inside the page (click to the first frame that shows the
new state: browser -> server -> job -> browser, as ``benchmarks.app_speed`` does), while it samples once a
second the server's resident memory and CPU share, its descendants' (the workers') memory, and how many
descendants used more than half a core over the last second (the processes that train). Then it closes every
page, and a fresh page must see nothing running or waiting.

Usage: python -m benchmarks.classroom [--pages 8] [--executor dask] [--json benchmarks/results/classroom.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

from benchmarks.app_speed import CLICK_LATENCY_JS
from benchmarks.common import chromium, machine, quantiles, served_explorer, until, write_json
from tests.browser.conftest import DEEP_TEXT_JS, descendants

TICKS = os.sysconf("SC_CLK_TCK")
FINISHED = ("· done ·", "· cut short ·", "· failed ·", "· cancelled ·")


def _rss(pid: int) -> int:
    """Resident memory of ``pid`` [bytes] (0 if it has gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _cpu(pid: int) -> float:
    """CPU seconds ``pid`` has used (0 if it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except OSError:
        return 0.0


class Sampler(threading.Thread):
    """Once a second: the server's and its descendants' resident memory, and its busy descendants."""

    def __init__(self, server: int):
        super().__init__(daemon=True)
        self.server, self.stop = server, threading.Event()
        self.samples: list[dict[str, float]] = []

    def run(self) -> None:
        before: dict[int, float] = {}
        server_cpu = _cpu(self.server)
        while not self.stop.wait(1.0):
            kids = descendants(self.server)
            now = {pid: _cpu(pid) for pid in kids}
            busy = sum(1 for pid, cpu in now.items() if cpu - before.get(pid, cpu) > 0.5)
            before = now
            cpu, server_cpu = _cpu(self.server) - server_cpu, _cpu(self.server)
            self.samples.append({"server_rss": _rss(self.server), "workers_rss": sum(_rss(p) for p in kids),
                                 "processes": len(kids), "busy": busy, "server_cpu": cpu})


def server_pid(port_url: str) -> int:
    """The process listening for ``port_url`` (the panel server this benchmark started)."""
    port = port_url.split(":")[2].split("/")[0]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"panel" in args and port.encode() in args:
            return int(cmdline.parent.name)
    raise RuntimeError(f"no panel server found for {port_url}")


def classroom(pages: int, executor: str) -> dict:
    from playwright.sync_api import sync_playwright

    with served_explorer(env={"ICEVIZ_EXECUTOR": executor}) as url, sync_playwright() as p:
        pid = server_pid(url)
        ctx = chromium(p)
        tabs = []
        for _ in range(pages):
            page = ctx.new_page()
            page.goto(url)
            page.locator(".bk-tab", has_text="Lesson").first.wait_for(timeout=120_000)
            tabs.append(page)
        sampler = Sampler(pid)
        sampler.start()
        rss_start = _rss(pid)
        t0 = time.monotonic()
        for page in tabs:
            page.locator(".bk-tab", has_text="Lesson").first.click()
        for page in tabs:
            page.wait_for_timeout(300)
            page.locator("button:visible", has_text="Start the lesson").first.click()

        def cards(page) -> list[str]:
            return page.locator(".job-card").evaluate_all(f"(els) => els.map({DEEP_TEXT_JS})")

        def all_finished() -> bool:
            texts = [cards(page) for page in tabs]
            return all(len(t) >= 2 and all(any(f in c for f in FINISHED) for c in t) for t in texts)

        latencies: list[float] = []
        deadline = t0 + 120 + 60 * pages
        while not all_finished():
            if time.monotonic() > deadline:
                raise RuntimeError("the lessons did not all end in time")
            for page in tabs:
                texts = cards(page)
                hit = next((i for i, t in enumerate(texts) if "· running ·" in t and "epoch" in t), None)
                if hit is None:
                    continue
                card = page.locator(".job-card").nth(hit)
                try:
                    latencies.append(card.evaluate(CLICK_LATENCY_JS, ["Pause", "paused"]) / 1000)
                    latencies.append(card.evaluate(CLICK_LATENCY_JS, ["Resume", "running"]) / 1000)
                except Exception:  # noqa: BLE001 - the run ended between reading and clicking: no click to time
                    pass
                break
            time.sleep(0.5)
        all_done_s = time.monotonic() - t0
        statuses = [next((f.strip(" ·") for f in FINISHED if f in c), "?") for page in tabs for c in cards(page)]
        for page in tabs:
            page.close()
        fresh = ctx.new_page()
        fresh.goto(url)
        note = fresh.locator(".server-note").first
        note.wait_for(timeout=60_000)
        idle_s = until(lambda: ": 0 running, 0 waiting" in note.evaluate(DEEP_TEXT_JS), 60, "an idle server")
        sampler.stop.set()
        sampler.join()
        ctx.close()
    s = sampler.samples
    return {
        "pages": pages, "executor": executor, "all_lessons_ended_s": round(all_done_s, 1),
        "statuses": {k: statuses.count(k) for k in sorted(set(statuses))},
        "click_latency_s": quantiles(latencies) if latencies else None,
        "busy_processes_max": max(x["busy"] for x in s),
        "processes_max": max(x["processes"] for x in s),
        "server_rss_mib": {"start": round(rss_start / 2**20), "max": round(max(x["server_rss"] for x in s) / 2**20),
                           "end": round(s[-1]["server_rss"] / 2**20)},
        "workers_rss_mib_max": round(max(x["workers_rss"] for x in s) / 2**20),
        "idle_after_close_s": round(idle_s, 1),
        "latencies_s": [round(x, 3) for x in latencies],
        "server_cpu_share": {"median": round(statistics.median(x["server_cpu"] for x in s), 2),
                             "max": round(max(x["server_cpu"] for x in s), 2)},
        "samples": len(s), "median_busy": statistics.median(x["busy"] for x in s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--executor", default="dask", choices=("dask", "processes"))
    parser.add_argument("--json")
    args = parser.parse_args()
    result = classroom(args.pages, args.executor)
    print({k: v for k, v in result.items() if k != "latencies_s"})
    write_json(args.json, {"benchmark": "a class: browser pages all start the lesson", "machine": machine(),
                           **result})


if __name__ == "__main__":
    main()
