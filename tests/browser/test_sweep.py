"""The Sweep tab in a real browser: launch a two-run sweep, see both rows, the summary and the plot's lines."""

from __future__ import annotations

from tests.browser.conftest import deep_text, shot
from tests.browser.test_explorer import number, select, tab, wait_for

LINES_JS = """() => {
  // the runs drawn in the sweep's parallel-coordinates plot (its multi-line's data source has a 'run' column)
  for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.type === "ColumnDataSource" && m.data.run !== undefined && m.data.xs !== undefined) return m.data.run;
  return null;
}"""


def test_a_two_run_sweep_shows_its_rows_its_summary_and_its_lines(page):
    select(page, "Data", "Benchmark field: curve")
    tab(page, "Sweep")
    page.locator(".sweep-plot").first.wait_for(timeout=30_000)
    shot(page, "sweep-fresh")
    page.locator('.sweep .choices__item[data-value="pinn"]').locator("button").first.click()  # dfNN alone
    page.wait_for_timeout(500)
    number(page, "Epochs per run", "2")
    plan = page.locator(".sweep-plan").first
    wait_for(lambda: "2 runs" in deep_text(plan), 10, "the plan to count two runs (one model, two seeds)")
    page.locator("button", has_text="Launch sweep").first.click()
    progress = page.locator(".sweep-progress").first
    wait_for(lambda: "2 of 2 done" in deep_text(progress), 120, "both runs to finish")
    wait_for(lambda: len(page.evaluate(LINES_JS) or []) == 2, 10, "two lines in the plot")
    assert sorted(page.evaluate(LINES_JS)) == ["dfnn · seed 0", "dfnn · seed 1"]
    runs = page.locator(".sweep-runs .tabulator-row")
    wait_for(lambda: runs.count() == 2, 10, "two rows in the runs table")
    assert all("done" in deep_text(runs.nth(i)) for i in range(2))
    assert "2 of 2" in deep_text(page.locator(".sweep-summary").first)  # one setting, both seeds done
    page.wait_for_timeout(1000)
    shot(page, "sweep-done")
