"""A fresh machine (no ../shared/data): the explorer offers "Get this dataset" and fetches from a mirror."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from iceviz.data.public import DATASETS
from tests.browser.conftest import deep_text, open_page, playwright_api, serve, shot
from tests.browser.test_explorer import wait_for


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The Byrd tensors published on a local HTTP server in the BASE_URL/OWNER/REPO/COMMIT/PATH layout."""
    from tests.conftest import BYRD_DIR

    if not (BYRD_DIR / "train_tensor.pt").exists():
        pytest.skip("the Byrd tensors are not in ../shared/data")
    root = tmp_path_factory.mktemp("mirror")
    for f in DATASETS["byrd-mcor"].files:
        path = root / f.repo / f.commit / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((BYRD_DIR / f.name).read_bytes())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory, mirror):
    """The explorer served from a folder with no ../shared beside it, fetching from the mirror."""
    cwd = tmp_path_factory.mktemp("fresh") / "machine"
    cwd.mkdir()
    yield from serve(tmp_path_factory, cwd=cwd, env={"ICEVIZ_FETCH_FROM": mirror, "ICEVIZ_DATA": ""})


def test_get_this_dataset_fetches_byrd_and_offers_it(bare_server, tmp_path):
    url, _, _ = bare_server
    errors: list[str] = []
    with playwright_api.sync_playwright() as p:
        context, page = open_page(url, tmp_path / "profile", errors, p)
        try:
            data = page.locator(".bk-input-group", has_text="Data").locator("select").first
            assert "Byrd Glacier observations" not in data.inner_text()
            button = page.locator("button", has_text="Get this dataset")
            assert button.is_visible()
            shot(page, "fetch-before")
            button.click()
            wait_for(lambda: "Byrd Glacier observations" in data.inner_text(), 60, "the Byrd source offered")
            wait_for(lambda: not button.is_visible(), 10, "the button hidden")
            assert "Byrd Glacier observations" in data.input_value() or "byrd" in deep_text(
                page.locator(".region-summary").first).lower()
            shot(page, "fetch-after")
        finally:
            context.close()
    assert not errors, f"JavaScript console errors: {errors[:5]}"
