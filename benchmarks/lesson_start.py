"""The teachers' lesson: seconds from "Start the lesson" to visible progress, in the served app.

Serves ``apps/explorer.py`` on a free localhost port, opens the Lesson tab in headless Chromium
(Playwright), clicks "Start the lesson" and times, from the click, until both lesson job cards
(dfNN and PINN) show an epoch after the first, and until the second divergence map is drawn;
then "Reset", and again, ``--repeats`` times in the same page. The target: visible progress
within 5 s on a 2-core CPU. Times are seen from this Python process (polling every
50 ms), so they include the automation's own round trip. The same is then measured, in the same
invocation, with ``--busy`` other processes spinning on the CPU (as when CI or another job shares
the cores).

Usage: python -m benchmarks.lesson_start [--repeats 5] [--busy 1] [--json benchmarks/results/lesson_start.json]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchmarks.common import chromium, machine, served_explorer, until, write_json
from tests.browser.conftest import DEEP_TEXT_JS

CARDS = ("dfNN ·", "PINN ")
"""How the lesson's two job cards begin ("dfNN · curve, noise 0.02", "PINN 0.02 · curve, noise 0.02")."""


def lesson_starts(repeats: int, busy: int = 0) -> list[dict[str, float]]:
    """Start-to-progress and start-to-maps seconds of ``repeats`` lessons, with ``busy`` spinning processes."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        return _measure(repeats)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def _measure(repeats: int) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    out = []
    with served_explorer() as url, sync_playwright() as p:
        ctx = chromium(p)
        page = ctx.new_page()
        page.goto(url)
        lesson_tab = page.locator(".bk-tab", has_text="Lesson").first
        lesson_tab.wait_for(timeout=60_000)

        def progressed() -> bool:
            texts = [c.evaluate(DEEP_TEXT_JS) for c in page.locator(".job-card").all()]
            return all(any(label in t and "epoch" in t and "epoch 0 ·" not in t for t in texts) for label in CARDS)

        for _ in range(repeats):
            lesson_tab.click()
            page.wait_for_timeout(1500)
            page.locator("button:visible", has_text="Start the lesson").first.click()  # its runs are on its own page
            t0 = time.monotonic()
            progress = until(progressed, 120, "progress on both lesson cards", start=t0)
            maps = until(lambda: page.locator(".divergence-map").count() >= 2, 120, "two divergence maps", start=t0)
            out.append({"progress_s": progress, "maps_s": maps})
            lesson_tab.click()
            page.locator("button:visible", has_text="Reset").first.click()
            until(lambda: page.locator(".job-card").count() == 0, 30, "reset")
            page.wait_for_timeout(1000)
        ctx.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy", type=int, default=1, help="spinning processes in the second measurement")
    parser.add_argument("--json")
    args = parser.parse_args()
    payload = {"benchmark": "lesson: Start click to visible progress", "machine": machine(), "repeats": args.repeats}
    for label, busy in (("quiet", 0), (f"busy{args.busy}", args.busy)):
        runs = lesson_starts(args.repeats, busy)
        payload[label] = {key: {"median": round(statistics.median(r[key] for r in runs), 2),
                                "max": round(max(r[key] for r in runs), 2), "first": round(runs[0][key], 2)}
                          for key in ("progress_s", "maps_s")}
        payload[label]["runs"] = [{k: round(v, 2) for k, v in r.items()} for r in runs]
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
