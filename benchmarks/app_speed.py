"""The explorer under load: training speed in the app against headless, and click latency.

Serves ``apps/explorer.py`` on a free localhost port, drives it with Chromium
(Playwright), trains one model for a fixed wall-clock budget in the app and
the same model headless (same data, hyper-parameters and budget), and
compares epochs per second (one phase: no early stop, no end of plan, so
no refit: the budget alone ends both). While the app trains, it clicks Pause / Resume
repeatedly and times each click until the job card shows the new state (a
full round trip: browser -> server -> job -> browser), measured inside the
page (click event to the first animation frame showing the change) and, for
comparison, as seen from the driving Python process (adds the automation's
own round trip).

Each executor (``$ICEVIZ_EXECUTOR``: the embedded Dask cluster, the default, and worker processes forked by the
server) gets its own server in turn; each repeat ends with the headless run its app runs are compared with.

Usage: python -m benchmarks.app_speed [--model dfnn] [--data synthetic:glacier] [--clicks 10]
       [--executors dask,processes] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import chromium, machine, quantiles, served_explorer, until, write_json
from tests.browser.conftest import DEEP_TEXT_JS
from iceviz.training.trainers import make_trainer

CLICK_LATENCY_JS = """async (card, [label, want]) => {
  const text = (n) => {
    let t = n.shadowRoot ? text(n.shadowRoot) : "";
    for (const c of n.childNodes) {
      if (c.nodeType === 3) t += c.textContent;
      else if ((c.nodeType === 1 && !["STYLE", "SCRIPT"].includes(c.tagName)) || c.nodeType === 11) t += text(c);
    }
    return t;
  };
  const find = (n) => {
    if (n.tagName === "BUTTON" && n.textContent.trim() === label) return n;
    for (const c of [...(n.shadowRoot ? [n.shadowRoot] : []), ...n.childNodes]) {
      const hit = c.nodeType === 1 || c.nodeType === 11 ? find(c) : null;
      if (hit) return hit;
    }
    return null;
  };
  let button = find(card);
  for (let i = 0; button === null && i < 300; i++) {  // a card being drawn again: its button in a frame or two
    await new Promise((resolve) => requestAnimationFrame(resolve));
    button = find(card);
  }
  if (button === null) throw new Error(`no ${label} button on the card`);
  const t0 = performance.now();
  button.click();
  return await new Promise((resolve, reject) => {
    const check = () => {
      if (text(card).includes(want)) resolve(performance.now() - t0);
      else if (performance.now() - t0 > 10000) reject(new Error(`no ${want} after 10 s`));
      else requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  });
}"""
"""Clicks a card's button inside the page and resolves with the milliseconds until the first animation
frame whose card text shows the new state: what the user sees, without the automation's own overhead."""
LABELS = {"synthetic:glacier": "Synthetic outlet glacier (Byrd box)", "byrd-mcor:": "Byrd Glacier observations (byrd-mcor)"}


def headless_rate(model: str, data: str, seconds: float) -> float:
    torch.set_num_threads(1)
    result = make_trainer(model, data, device="cpu", seed=0, epochs=1_000_000, seconds=seconds,
                          planned_epochs=1_000_000, patience=1_000_000).fit()
    return result.epochs / result.seconds


def app_run(model: str, data: str, seconds: float, clicks: int, executor: str) -> dict:
    from playwright.sync_api import sync_playwright

    with served_explorer(env={"ICEVIZ_EXECUTOR": executor}) as url:
        with sync_playwright() as p:
            ctx = chromium(p)
            page = ctx.new_page()
            page.goto(url)
            page.locator(".bk-tab", has_text="Map").first.wait_for(timeout=60_000)
            page.locator(".bk-input-group", has_text="Data").locator("select").first.select_option(label=LABELS[data])
            page.wait_for_timeout(2000)
            for name in ("dfnn", "pinn", "nn"):
                if name != model:
                    page.locator(f'.choices__item[data-value="{name}"]').locator("button").first.click()
            page.locator(".bk-input-group", has_text="Hyper-parameters of").locator("select").first.select_option(
                label=model)
            page.wait_for_timeout(1000)
            epochs = page.locator(".bk-input-group", has_text="Epochs").locator("input").first
            epochs.fill("1000000")  # the wall-clock budget ends the run, in the app as headless
            epochs.press("Enter")
            for knob in ("Planned epochs", "Patience"):  # no early stop, no end of plan, so no refit: one phase
                box = page.locator(".bk-input-group", has_text=knob).locator("input").first  # the budget's length
                box.fill("1000000")
                box.press("Enter")
            page.wait_for_timeout(500)
            page.locator("button", has_text="Start training").first.click()
            card = page.locator(".job-card").first

            def text() -> str:
                return card.evaluate(DEEP_TEXT_JS)

            def click(button: str, shows: str) -> tuple[float, float]:
                """(in-browser click -> first frame showing ``shows``, the same seen from Python) in seconds."""
                t0 = time.monotonic()
                browser_ms = card.evaluate(CLICK_LATENCY_JS, [button, shows])
                return browser_ms / 1000, time.monotonic() - t0

            until(lambda: "running" in text(), 60, "running job")
            page.wait_for_timeout(3000)
            latencies, outside = [], []
            for _ in range(clicks):
                for button, shows in (("Pause", "paused"), ("Resume", "running")):
                    inside, seen = click(button, shows)
                    latencies.append(inside)
                    outside.append(seen)
                page.wait_for_timeout(700)
            # "cut short" (its plan, a million epochs, far from reached) or "done": the budget ended it
            until(lambda: "done" in text() or "cut short" in text(), seconds + 120, "finished job")
            page.wait_for_timeout(1500)
            row = page.locator(".tabulator-row").first
            cells = {f: float(row.locator(f'[tabulator-field="{f}"]').first.evaluate(DEEP_TEXT_JS).replace(",", ""))
                     for f in ("epochs", "seconds")}
            ctx.close()
        return {"latencies": latencies, "outside": outside, **cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="dfnn")
    parser.add_argument("--data", default="synthetic:glacier", choices=list(LABELS))
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--executors", default="dask,processes",
                        help="the servers' executors ($ICEVIZ_EXECUTOR), each served in turn, comma-separated")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    seconds = 30.0  # the app's default budget per model
    executors = args.executors.split(",")
    runs: list[dict] = []
    for repeat in range(args.repeats):  # each repeat: every executor's app run, then headless, alternating
        for executor in executors:
            app = app_run(args.model, args.data, seconds, args.clicks, executor)
            runs.append({"repeat": repeat, "executor": executor, "app_epochs_per_s": app["epochs"] / app["seconds"],
                         "latencies": app["latencies"], "outside": app["outside"]})
        head = headless_rate(args.model, args.data, seconds)
        for run in runs[-len(executors):]:
            run["headless_epochs_per_s"] = head
            run["app_over_headless"] = run["app_epochs_per_s"] / head
    summary = {}
    for executor in executors:
        mine = [r for r in runs if r["executor"] == executor]
        summary[executor] = {
            "app_over_headless": quantiles([r["app_over_headless"] for r in mine]),
            "click_latency_s": quantiles([x for r in mine for x in r["latencies"]]),
            "click_latency_seen_from_python_s": quantiles([x for r in mine for x in r["outside"]]),
        }
        clicks = summary[executor]["click_latency_s"]
        print(f"{executor:10s} app/headless median {summary[executor]['app_over_headless']['median']:.3f} "
              f"(runs {[round(r['app_over_headless'], 3) for r in mine]}), click median / p90 "
              f"{clicks['median']:.3f} / {clicks['p90']:.3f} s")
    write_json(args.json, {
        "benchmark": "explorer responsiveness and in-app training speed, per executor",
        "machine": machine(), "model": args.model, "data": args.data, "budget_s": seconds,
        "summary": summary,
        "runs": [{k: (round(v, 3) if isinstance(v, float) else [round(x, 3) for x in v] if isinstance(v, list) else v)
                  for k, v in r.items()} for r in runs],
    })


if __name__ == "__main__":
    main()
