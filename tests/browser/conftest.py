"""A real `panel serve apps/explorer.py` on a free localhost port, driven by Debian's Chromium.

Every test fails on a JavaScript console error, and the session fails if the
server's log holds a Python traceback. Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ICEVIZ_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def descendants(pid: int) -> set[int]:
    """Ids of every process below ``pid`` (Linux /proc), e.g. the server's training workers."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path_factory, cwd: Path = REPO, env: dict[str, str] | None = None):
    """Start ``panel serve apps/explorer.py`` from ``cwd``; yields (url, log path, process), and at the end the
    log must hold no traceback.

    Sessions whose tab closed are discarded within about six seconds (Bokeh's default is half a minute); a
    shorter lifetime can discard a page's session before its slow first WebSocket connects."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "panel.log"
    # pytest's own temporary folders are the test server's data roots (fixtures write ensembles and products there)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ICEVIZ_CACHE": str(tmp_path_factory.mktemp("cache")),
           "ICEVIZ_DATA_ROOTS": str(tmp_path_factory.getbasetemp()), **(env or {})}
    cmd = [sys.executable, "-m", "panel", "serve", str(REPO / "apps" / "explorer.py"), "--address", "127.0.0.1",
           "--port", str(port), "--allow-websocket-origin", f"127.0.0.1:{port}", "--num-procs", "1",
           "--check-unused-sessions", "500", "--unused-session-lifetime", "5000"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/explorer"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            # the first page builds the app (several seconds on a busy machine): wait for it, do not retry
            if urllib.request.urlopen(url, timeout=60).status == 200:
                break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"panel serve exited early:\n{log_path.read_text()}")
    else:
        proc.terminate()
        raise RuntimeError(f"panel serve did not answer within 90 s:\n{log_path.read_text()}")
    yield url, log_path, proc
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    text = log_path.read_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(log_path, ARTIFACTS / f"panel-serve-{Path(cwd).name}.log")
    assert "Traceback" not in text, f"the server logged a traceback:\n{text[-4000:]}"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """(url, log path, process) of the explorer served from the repository (../shared/data in reach)."""
    yield from serve(tmp_path_factory)


def open_page(url: str, profile: Path, errors: list[str], playwright):
    """A fresh browser context and page on ``url``, console errors collected in ``errors``."""
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
        viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    pg.goto(url)
    pg.locator(".bk-tab", has_text="Map").first.wait_for(timeout=60_000)
    pg.wait_for_timeout(1500)
    return context, pg


@pytest.fixture
def page(server, tmp_path, request):
    """A fresh browser session on the app; fails the test on any console error."""
    url, _, _ = server
    errors: list[str] = []
    with playwright_api.sync_playwright() as p:
        context, pg = open_page(url, tmp_path / "chromium-profile", errors, p)
        yield pg
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-end.png"), timeout=30_000)
        finally:
            context.close()
    assert not errors, f"JavaScript console errors: {errors[:5]}"


def shot(page, name: str) -> Path:
    """Save a screenshot of the page under artifacts/browser/ and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), timeout=30_000)
    return path


DEEP_TEXT_JS = """(el) => {
  const walk = (n) => {
    let text = "";
    if (n.shadowRoot) text += walk(n.shadowRoot);
    for (const c of n.childNodes) {
      if (c.nodeType === 3) text += c.textContent;
      else if ((c.nodeType === 1 && !["STYLE", "SCRIPT"].includes(c.tagName)) || c.nodeType === 11) text += walk(c);
    }
    return text;
  };
  return walk(el);
}"""


def deep_text(locator) -> str:
    """Text of an element including its shadow roots (Panel renders into shadow DOM)."""
    return locator.evaluate(DEEP_TEXT_JS)
