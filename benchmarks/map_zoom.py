"""The continental ice-speed map in a browser: first render and re-render after each wheel zoom, end to end.

Serves the explorer with the product files of --dir configured (run ``benchmarks.real_data`` first: it
writes full-size files and records them in ``DIR/config``), opens it in headless Chromium, and times

* first render: page load until the speed image has arrived in the browser, and side by side the same
  page with no product configured, until its base map has arrived (what the speed layer adds to a load);
* re-render: a mouse-wheel zoom gesture over the map (three wheel events 20 ms apart, towards the Byrd
  box), from the gesture's last event until the image for the new view has arrived; --steps gestures per
  page, from the whole continent (6,800 km across) down to tens of km, --repeats pages. Latencies are
  grouped by the width of the view after the gesture. (A lone wheel event is sent to the server only with
  the next one: Bokeh/HoloViews batch range updates, and a real gesture is many events.)

The speed image is the renderer whose glyph is a Bokeh ``Image`` by its model type (the base map is an
``ImageRGBA``); arrival is the first animation frame at which its image array has been replaced.

    python -m benchmarks.map_zoom --dir /tmp/iceviz-fullsize --json benchmarks/results/map_zoom.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.common import machine, served_explorer, write_json

REPO = Path(__file__).resolve().parents[1]
BYRD = (500_000.0, -850_000.0)
FRAME_PX = 620  # the overview's frame_width and frame_height
FOOTPRINT_X0 = -2_800_225.0  # the mosaic's west edge: the image is clipped to it
WATCH_JS = """() => {
  window.__changes = [];
  const image = () => {
    const r = [...Bokeh.documents[0].all_models].find(m => m.glyph !== undefined && m.glyph.type === 'Image');
    if (r === undefined) return undefined;
    const d = r.data_source.data;
    return d instanceof Map ? d.get('image') : d.image;
  };
  let last = image();
  const watch = () => {
    const now = image();
    if (now !== last) {
      const r = [...Bokeh.documents[0].all_models].find(m => m.glyph !== undefined && m.glyph.type === 'Image');
      const d = r.data_source.data;
      const x = d instanceof Map ? d.get('x') : d.x;
      window.__changes.push([performance.now(), x[0]]);
      last = now;
    }
    requestAnimationFrame(watch);
  };
  requestAnimationFrame(watch);
  return last !== undefined;
}"""
RANGES_JS = """() => {
  const f = [...Bokeh.documents[0].all_models].find(m => m.type === 'Figure');
  return [f.x_range.start, f.x_range.end, f.y_range.start, f.y_range.end];
}"""


def load_until(browser, url: str, glyph: str):
    """A new page on ``url`` and the seconds until a renderer of ``glyph`` (a Bokeh model type) is drawn."""
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    start = time.perf_counter()
    page.goto(url, timeout=120_000)
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length && [...Bokeh.documents[0].all_models]"
                           f".some(m => m.glyph !== undefined && m.glyph.type === '{glyph}')", timeout=120_000)
    return page, time.perf_counter() - start


def bucket(width_km: float) -> str:
    for limit, label in ((2000, "over 2,000 km"), (500, "500-2,000 km"), (100, "100-500 km")):
        if width_km > limit:
            return label
    return "under 100 km"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/iceviz-fullsize"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    env = {"ICEVIZ_CONFIG_DIR": str(args.dir / "config"), "ICEVIZ_CACHE": str(args.dir / "cache")}
    with served_explorer(env, log=args.dir / "panel.log", wait_s=120.0) as url:
        out: dict = {"benchmark": "map_zoom", "machine": machine(),
                     "first_render_s": [], "rerender_s": {}, "steps": []}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--headless", "--disable-gpu"])
            for _ in range(args.repeats):
                page, seconds = load_until(browser, url, "Image")
                out["first_render_s"].append(seconds)
                assert page.evaluate(WATCH_JS), "no speed image on the map"
                canvas = page.locator(".overview-map canvas").first.bounding_box()
                for _ in range(args.steps):
                    x0, x1, y0, y1 = page.evaluate(RANGES_JS)
                    px = canvas["x"] + FRAME_PX * (BYRD[0] - x0) / (x1 - x0)
                    py = canvas["y"] + FRAME_PX * (y1 - BYRD[1]) / (y1 - y0)
                    page.mouse.move(px, py)
                    before = page.evaluate("() => window.__changes.length")
                    for _ in range(3):
                        page.mouse.wheel(0, -100)
                        page.wait_for_timeout(20)
                    t0 = page.evaluate("() => performance.now()")
                    x0, x1, *_ = page.evaluate(RANGES_JS)
                    # the image starts at the view (or the mosaic's edge), within a pixel or, zoomed in, a cell
                    expect, tol = max(x0, FOOTPRINT_X0), max(0.01 * (x1 - x0), 1000.0)
                    arrived = (f"() => window.__changes.slice({before}).some(c => Math.abs(c[1] - {expect}) < {tol})")
                    page.wait_for_function(arrived, timeout=30_000)
                    t1 = page.evaluate(f"() => window.__changes.slice({before}).find("
                                       f"c => Math.abs(c[1] - {expect}) < {tol})[0]")
                    width = (x1 - x0) / 1000.0
                    out["steps"].append({"width_km": width, "seconds": max(t1 - t0, 0.0) / 1000.0})
                    out["rerender_s"].setdefault(bucket(width), []).append(max(t1 - t0, 0.0) / 1000.0)
                    page.wait_for_timeout(500)
                page.close()
            browser.close()
    with served_explorer({"ICEVIZ_CONFIG_DIR": str(args.dir / "config-empty"), "ICEVIZ_CACHE": str(args.dir / "cache")},
                         wait_s=120.0) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--headless", "--disable-gpu"])
        out["first_render_without_speed_s"] = []
        for _ in range(args.repeats):
            page, seconds = load_until(browser, url, "ImageRGBA")
            out["first_render_without_speed_s"].append(seconds)
            page.close()
        browser.close()
    out["first_render_median_s"] = statistics.median(out["first_render_s"])
    out["first_render_without_speed_median_s"] = statistics.median(out["first_render_without_speed_s"])
    out["rerender_median_s"] = {k: statistics.median(v) for k, v in out["rerender_s"].items()}
    out["rerender_all_median_s"] = statistics.median(s["seconds"] for s in out["steps"])
    out["rerender_max_s"] = max(s["seconds"] for s in out["steps"])
    write_json(args.json, out)


if __name__ == "__main__":
    main()
