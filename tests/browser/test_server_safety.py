"""A server a class shares: the Map tab offers only the operator's data folders, shows no server paths, and a
folder picked there builds and trains a real-data box."""

from __future__ import annotations

import pytest

from tests.browser.conftest import deep_text, open_page, playwright_api, serve, shot
from iceviz.app.state import REAL_LABEL
from iceviz.data.points import load_points
from tests.browser.test_explorer import card_text, download, keep_models, number, select, wait_for


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
            # the folder's files draw the speed mosaic, build the box (MEaSUREs velocity x Bedmap thickness)
            # and train; the spec names the folder by its root, not by the server's path
            wait_for(lambda: not page.locator(".speed-note").first.is_visible(), 60, "the speed map to be ready")
            select(page, "Data", REAL_LABEL)
            summary = page.locator(".region-summary").first
            wait_for(lambda: "region:box?bbox=400000,600000,-950000,-750000" in deep_text(summary), 30,
                     "the real-data box to be built")
            wait_for(lambda: "test points" in deep_text(summary), 30, "its point counts")
            assert f"data={root.name}" in deep_text(summary) and str(root.parent) not in deep_text(summary)
            page.get_by_text("Region builder (real data)").first.click()
            kept = load_points(download(page, "Points file of this box", tmp_path / "byrd_points.csv"))
            assert len(kept.train) + len(kept.test) > 1000
            keep_models(page, ["dfnn"])
            select(page, "Hyper-parameters of", "dfnn")
            number(page, "Epochs", "3")
            page.locator("button", has_text="Start training").first.click()
            wait_for(lambda: "done" in card_text(page, "dfnn #"), 90, "dfnn to finish on the real-data box")
            shot(page, "real-data-trained")
        finally:
            context.close()
    assert not errors, errors[:5]
