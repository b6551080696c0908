"""A server a class shares: the Map tab offers only the operator's data folders and shows no server paths."""

from __future__ import annotations

import pytest

from tests.browser.conftest import deep_text, open_page, playwright_api, serve, shot
from tests.browser.test_explorer import select, wait_for


@pytest.fixture(scope="module")
def rooted_server(tmp_path_factory, glacier_products):
    """The explorer with one data root (holding the product files), and a secret file beside it, outside."""
    root = glacier_products["bedmap"].parent
    outside = root.parent / "private"
    outside.mkdir(exist_ok=True)
    (outside / "secrets.csv").write_text("db_password=hunter2, api_key=abc123\n")
    config = tmp_path_factory.mktemp("config")
    yield from serve(tmp_path_factory, env={"ICEVIZ_DATA_ROOTS": str(root), "ICEVIZ_CONFIG_DIR": str(config)})


def test_only_the_operators_folders_are_offered_and_no_server_path_is_shown(rooted_server, glacier_products,
                                                                            tmp_path):
    url, _, _ = rooted_server
    root = glacier_products["bedmap"].parent
    errors: list[str] = []
    with playwright_api.sync_playwright() as p:
        context, page = open_page(url, tmp_path / "profile", errors, p)
        try:
            choice = page.locator(".data-choice select").first
            wait_for(lambda: "looking" not in choice.inner_text(), 30, "the data folders offered")
            offered = choice.locator("option").all_inner_texts()
            assert offered[1:] == [root.name, f"{root.name}/bedmap"]  # by name under the root, nothing else
            select(page, "Data folders on this server", root.name)
            page.locator("button", has_text="Use this folder").first.click()
            files = page.locator(".data-files").first
            wait_for(lambda: "BedMachineAntarctica-v3.nc" in deep_text(files), 30, "the files listed")
            text = page.locator("body").inner_text()
            assert "hunter2" not in text and "secrets" not in text and str(root.parent) not in text
            assert "Real data" in page.locator(".bk-input-group", has_text="Data").locator("select").first.inner_text()
            shot(page, "data-folders")
        finally:
            context.close()
    assert not errors, errors[:5]
