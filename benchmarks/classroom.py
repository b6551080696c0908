"""A class on one server: browser pages (and headless students) all start the lesson; click latency meanwhile, and
what the server holds.

Serves the explorer (with its default executor, the embedded Dask cluster, unless ``--executor``), opens
``--pages`` pages in one headless Chromium and has every one start the lesson (dfNN and PINN on the curve
field) within seconds of the others. Until every lesson has ended it clicks Pause, then Resume, on whichever
page has a running lesson card, timing each click inside the page (click to the first frame that shows the
new state: browser -> server -> job -> browser, as ``benchmarks.app_speed`` does), while it samples once a
second the server's resident memory and CPU share, its descendants' (the workers') memory, and how many
descendants used more than half a core over the last second (the processes that train). Then it closes every
page, and a fresh page must see nothing running or waiting.

``--students N`` adds N sessions without a browser (:class:`Student`: a Bokeh client on the app's websocket, as a
page's would be, that opens the Lesson tab and presses Start right after the pages do and then reads every update
the server sends without drawing it): the server does all it does for a class of N + pages, while the machine
renders only the pages. That is the classroom as it is, where each student's browser runs on their own machine.

Usage: python -m benchmarks.classroom [--pages 8] [--students 0] [--executor dask] [--rounds 1]
                                      [--json benchmarks/results/classroom.json]
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import statistics
import threading
import time
from pathlib import Path

from bokeh.client.session import ClientSession
from bokeh.client.util import websocket_url_for_server_url
from bokeh.core.serialization import DeserializationError
from bokeh.document.events import MessageSentEvent
from bokeh.events import ButtonClick
from bokeh.models import Button, Tabs

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
        server_cpu, own_cpu = _cpu(self.server), _cpu(os.getpid())
        while not self.stop.wait(1.0):
            kids = descendants(self.server)
            now = {pid: _cpu(pid) for pid in kids}
            busy = sum(1 for pid, cpu in now.items() if cpu - before.get(pid, cpu) > 0.5)
            before = now
            cpu, server_cpu = _cpu(self.server) - server_cpu, _cpu(self.server)
            own, own_cpu = _cpu(os.getpid()) - own_cpu, _cpu(os.getpid())
            self.samples.append({"own_cpu": own, "server_rss": _rss(self.server),
                                 "workers_rss": sum(_rss(p) for p in kids),
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


class _ReadingSession(ClientSession):
    """A Bokeh client session that reads every update and skips those it cannot apply (some of the app's models
    exist only in a browser's document; a page would draw them, a student only has to take them off the wire)."""

    skipped = 0

    def _handle_patch(self, message) -> None:
        try:
            super()._handle_patch(message)
        except DeserializationError:
            self.skipped += 1


class Student(threading.Thread):
    """A session without a browser: opens the app (``connected`` is set then), presses the lesson's Start when
    ``go`` is set, then reads every update until it leaves."""

    def __init__(self, url: str, go: threading.Event):
        super().__init__(daemon=True)
        self.url, self.go, self.connected, self.error = url, go, threading.Event(), ""
        self.session: _ReadingSession | None = None

    def run(self) -> None:
        import panel.models  # noqa: F401 - the app's model types, so that its document can be read

        for module in pkgutil.iter_modules(panel.models.__path__):
            importlib.import_module(f"panel.models.{module.name}")
        try:
            session = self.session = _ReadingSession(websocket_url=websocket_url_for_server_url(self.url))
            session.pull()
        except Exception as err:  # noqa: BLE001 - reported in the results
            self.error = repr(err)
            return
        finally:
            self.connected.set()
        self.go.wait()
        try:
            doc = session.document
            tabs = next(m for m in doc.models if isinstance(m, Tabs) and any(t.title == "Lesson" for t in m.tabs))
            tabs.active = [t.title for t in tabs.tabs].index("Lesson")
            start = next(m for m in doc.models if isinstance(m, Button) and m.label == "Start the lesson")
            doc.callbacks.trigger_on_change(MessageSentEvent(doc, "bokeh_event", ButtonClick(start)))
        except Exception as err:  # noqa: BLE001 - reported in the results
            self.error = repr(err)
            return
        session._loop_until_closed()  # sends the tab change and the click, then reads until the connection closes

    def leave(self) -> None:
        """Close the connection (the server then ends the session, as when a tab closes)."""
        if self.session is not None:
            connection = self.session._connection
            connection.io_loop.add_callback(connection.close, "the student left")


def classroom(pages: int, executor: str, students: int = 0) -> dict:
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
        rss_pages = _rss(pid)  # the server with the pages' sessions, before the students'
        go = threading.Event()
        crowd = [Student(url, go) for _ in range(students)]
        for student in crowd:
            student.start()
        for student in crowd:
            student.connected.wait(300)
        sampler = Sampler(pid)
        sampler.start()
        rss_start = _rss(pid)
        t0 = time.monotonic()
        for page in tabs:
            page.locator(".bk-tab", has_text="Lesson").first.click()
        for page in tabs:
            page.wait_for_timeout(300)
            page.locator("button:visible", has_text="Start the lesson").first.click()
        go.set()

        def cards(page) -> list[str]:
            return page.locator(".job-card").evaluate_all(f"(els) => els.map({DEEP_TEXT_JS})")

        def all_finished() -> bool:
            texts = [cards(page) for page in tabs]
            return all(len(t) >= 2 and all(any(f in c for f in FINISHED) for c in t) for t in texts)

        latencies: list[float] = []
        most_waiting = 0
        deadline = t0 + 120 + 60 * pages
        while not all_finished():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the lessons did not all end in time; the cards: {[cards(p) for p in tabs]}")
            waiting = re.search(r"(\d+) waiting", tabs[0].locator(".server-note").first.evaluate(DEEP_TEXT_JS))
            most_waiting = max(most_waiting, int(waiting.group(1)) if waiting else 0)
            for page in tabs:
                texts = cards(page)
                hit = next((i for i, t in enumerate(texts) if "· running ·" in t and "epoch" in t), None)
                # a pause whose card took over 10 s to show it (counted as a timed-out click) is resumed here
                stuck = next((i for i, t in enumerate(texts) if "· paused ·" in t), None)
                if hit is None and stuck is None:
                    continue
                which = stuck if hit is None else hit
                card = page.locator(".job-card").nth(which)
                clicks = [["Resume", "running"]] if hit is None else [["Pause", "paused"], ["Resume", "running"]]
                for click in clicks:
                    try:
                        latencies.append(card.evaluate(CLICK_LATENCY_JS, click) / 1000)
                    except Exception as err:  # noqa: BLE001 - the run ended between reading and clicking (no
                        # click to time), or the click took over 10 s to show (counted as 10 s)
                        if "after 10 s" in str(err) and not any(f in cards(page)[which] for f in FINISHED):
                            latencies.append(10.0)
                        break
                break
            time.sleep(0.5)
        all_done_s = time.monotonic() - t0
        statuses = [next((f.strip(" ·") for f in FINISHED if f in c), "?") for page in tabs for c in cards(page)]
        for page in tabs:
            page.close()
        for student in crowd:
            student.leave()
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
        "pages": pages, "students": students, "executor": executor,
        "students_failed": [st.error for st in crowd if st.error],
        "student_updates_skipped": sum(st.session.skipped for st in crowd if st.session is not None),
        "all_lessons_ended_s": round(all_done_s, 1),  # the pages' lessons (students' are cut off)
        "statuses": {k: statuses.count(k) for k in sorted(set(statuses))},
        "click_latency_s": quantiles(latencies) if latencies else None,
        "busy_processes_max": max(x["busy"] for x in s),
        "jobs_waiting_max": most_waiting,
        "processes_max": max(x["processes"] for x in s),
        "server_rss_mib": {"pages_only": round(rss_pages / 2**20), "start": round(rss_start / 2**20),
                           "max": round(max(x["server_rss"] for x in s) / 2**20),
                           "end": round(s[-1]["server_rss"] / 2**20)},
        "workers_rss_mib_max": round(max(x["workers_rss"] for x in s) / 2**20),
        "idle_after_close_s": round(idle_s, 1),
        "latencies_s": [round(x, 3) for x in latencies],
        "server_cpu_share": {"median": round(statistics.median(x["server_cpu"] for x in s), 2),
                             "max": round(max(x["server_cpu"] for x in s), 2)},
        "benchmark_cpu_share_median": round(statistics.median(x["own_cpu"] for x in s), 2),
        "samples": len(s), "median_busy": statistics.median(x["busy"] for x in s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--students", type=int, default=0, help="sessions without a browser (Student)")
    parser.add_argument("--executor", default="dask", choices=("dask", "processes"))
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the class this many times (a fresh server each), clicks pooled")
    parser.add_argument("--json")
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        rounds.append(classroom(args.pages, args.executor, args.students))
        print({k: v for k, v in rounds[-1].items() if k != "latencies_s"}, flush=True)
    clicks = [x for r in rounds for x in r["latencies_s"]]
    pooled = {"click_latency_s": quantiles(clicks) if clicks else None, "rounds": len(rounds)}
    print(pooled)
    write_json(args.json, {"benchmark": "a class: browser pages (and students) all start the lesson",
                           "machine": machine(), **(rounds[0] if len(rounds) == 1 else {"per_round": rounds}),
                           **pooled})


if __name__ == "__main__":
    main()
