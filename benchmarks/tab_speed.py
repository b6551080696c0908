"""The explorer as a newcomer meets it: first visit to every tab, choosing data sets and shelves, a new job.

Serves ``apps/explorer.py`` on a free localhost port and drives a fresh headless Chromium session
(Playwright). Times are from the click (or the choice) until what the user came for is drawn, seen
from this Python process (polling every 50 ms, so they include the automation's round trip):

- each tab's first visit: until its own content is visible (the Region tab's map, the viscosity
  shelf's preview or its refusal, the simulator's and the emulator's controls);
- every entry of the Data list, every preset region (on the synthetic glacier), then every shelf
  preset: until the sidebar's summary (or message) changes, or the shelf's first picture (or its
  refusal) is shown;
- Start training (one dfNN): until its card shows a finished epoch.

Targets (issue 22): a tab's first visit <= 3 s, a data set or shelf <= 2 s, a new job's progress <= 3 s.

Usage: python -m benchmarks.tab_speed [--json benchmarks/results/tab_speed.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import chromium, machine, served_explorer, until, write_json
from iceviz.app.shelf_presets import PRESETS
from iceviz.geo.crs import format_bounds
from iceviz.geo.regions import PRESET_REGIONS
from tests.browser.conftest import DEEP_TEXT_JS

TABS = {  # tab -> what shows it is ready
    "Region": ".region-map canvas",
    "Training": "button:has-text(\"Clear finished\")",
    "Lesson": ".lesson-controls",
    "Saved runs": "text=Saved runs found",
    "Simulator": ".simulator",
    "Viscosity": ".visc-preview canvas, .visc-preview img, .visc-message:visible",
    "Emulator": ".emulator",
    "Map": ".overview-map canvas",
}


def text_of(page, selector: str) -> str:
    loc = page.locator(selector)
    return loc.first.evaluate(DEEP_TEXT_JS) if loc.count() else ""


def measure() -> dict:
    from playwright.sync_api import sync_playwright

    out: dict = {"tabs": {}, "sources": {}, "regions": {}, "shelves": {}}
    with served_explorer() as url, sync_playwright() as p:
        ctx = chromium(p)
        page = ctx.new_page()
        t0 = time.monotonic()
        page.goto(url)
        out["first_page_s"] = until(lambda: page.locator(".overview-map canvas").count() > 0, 120, "the map",
                                    start=t0)
        page.wait_for_timeout(2000)
        for tab, ready in TABS.items():
            page.locator(".bk-tab", has_text=tab).first.click()
            start = time.monotonic()
            out["tabs"][tab] = round(until(lambda: page.locator(ready).filter(visible=True).count() > 0, 120,
                                           f"the {tab} tab", start=start), 2)
            page.wait_for_timeout(1000)
        data = page.locator(".bk-input-group").filter(has=page.locator("label", has_text="Data")).locator("select")
        options = data.first.locator("option").all_inner_texts()
        for option in options[1:] + options[:1]:  # the first is chosen already: it comes last
            before = text_of(page, ".region-summary") + text_of(page, ".app-message")
            data.first.select_option(label=option)
            start = time.monotonic()
            out["sources"][option] = round(until(
                lambda: text_of(page, ".region-summary") + text_of(page, ".app-message") != before, 60,
                f"the summary of {option}", start=start), 2)
            page.wait_for_timeout(1000)
        data.first.select_option(label="Synthetic outlet glacier (Byrd box)")
        page.wait_for_timeout(1500)
        region = page.locator(".bk-input-group").filter(has=page.locator("label", has_text="Region")).locator("select")
        by_name = {r.name: r for r in PRESET_REGIONS.values()}
        for option in region.first.locator("option").all_inner_texts()[1:]:
            box = f"Box: {format_bounds(by_name[option].bounds)}"  # the summary's first line once loaded
            region.first.select_option(label=option)
            start = time.monotonic()
            out["regions"][option] = round(until(lambda: box in text_of(page, ".region-summary"), 60,
                                                 f"the summary of {option}", start=start), 2)
            page.wait_for_timeout(1000)
        page.locator(".bk-tab", has_text="Viscosity").first.click()
        page.wait_for_timeout(1000)
        shelf = page.locator(".bk-input-group").filter(has=page.locator("label", has_text="Ice shelf")).locator("select")
        options = shelf.first.locator("option").all_inner_texts()
        current = shelf.first.evaluate("s => s.options[s.selectedIndex].text")
        for option in [o for o in options if o != current]:  # the current one drew with the tab
            shelf.first.select_option(label=option)
            start = time.monotonic()
            description = PRESETS[option].description

            def shown() -> bool:
                """The new shelf described once loaded ("… calving-front points"), or refused by name."""
                info = text_of(page, ".visc-info")
                loaded = description in info and "calving-front points" in info
                return loaded or option.split(" ")[0] in text_of(page, ".visc-message")

            out["shelves"][option] = round(until(shown, 120, f"the shelf {option}", start=start), 2)
            page.wait_for_timeout(1000)
        page.locator(".bk-tab", has_text="Map").first.click()
        data.first.select_option(label="Benchmark field: curve")
        page.wait_for_timeout(1500)
        for name in ("pinn", "nn"):
            page.locator(f'.choices__item[data-value="{name}"]').locator("button").first.click()
            page.wait_for_timeout(300)
        page.locator("button", has_text="Start training").first.click()
        start = time.monotonic()

        def progressed() -> bool:
            t = text_of(page, ".job-card")
            return "epoch" in t and "epoch 0 ·" not in t

        out["job_progress_s"] = round(until(progressed, 60, "the job's first epoch", start=start), 2)
        ctx.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json")
    args = parser.parse_args()
    result = measure()
    for group in ("tabs", "sources", "regions", "shelves"):
        values = result[group]
        print(f"{group}: worst {max(values.values()):.2f} s, median {statistics.median(values.values()):.2f} s")
        for key, value in values.items():
            print(f"  {key:45s} {value:6.2f} s")
    print(f"first page {result['first_page_s']:.2f} s; a new job's first epoch {result['job_progress_s']:.2f} s")
    write_json(args.json, {"benchmark": "explorer tabs, data sets, shelves and a new job, fresh session",
                           "machine": machine(), **result})


if __name__ == "__main__":
    main()
