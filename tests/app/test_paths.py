"""File paths typed in the app: no traversal, only supported files."""

from pathlib import Path

import pytest

from iceviz.app.paths import safe_path


@pytest.fixture
def roots(tmp_path):
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "model.safetensors").write_bytes(b"x")
    (runs / "notes.txt").write_text("x")
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    return [runs]


def test_relative_and_absolute_paths_inside_a_root(roots):
    assert safe_path("a/model.safetensors", roots, [".safetensors"]) == roots[0] / "a" / "model.safetensors"
    inside = str(roots[0] / "a" / "model.safetensors")
    assert safe_path(inside, roots, [".safetensors"]).name == "model.safetensors"


@pytest.mark.parametrize("text", ["../secret.safetensors", "a/../../secret.safetensors"])
def test_traversal_is_refused(roots, text):
    with pytest.raises(ValueError, match="outside the allowed folders"):
        safe_path(text, roots, [".safetensors"])


def test_absolute_path_outside_is_refused(roots, tmp_path):
    with pytest.raises(ValueError, match="outside"):
        safe_path(str(tmp_path / "secret.safetensors"), roots, [".safetensors"])


def test_symlink_escaping_a_root_is_refused(roots, tmp_path):
    (roots[0] / "link.safetensors").symlink_to(tmp_path / "secret.safetensors")
    with pytest.raises(ValueError):
        safe_path("link.safetensors", roots, [".safetensors"])


def test_wrong_type_missing_and_empty(roots):
    with pytest.raises(ValueError, match="only .safetensors"):
        safe_path("notes.txt", roots, [".safetensors"])
    with pytest.raises(ValueError, match="no such file"):
        safe_path("b/model.safetensors", roots, [".safetensors"])
    with pytest.raises(ValueError, match="no path"):
        safe_path("  ", roots, [".safetensors"])


def test_relative_to_a_base_inside_a_root(roots, tmp_path):
    # "runs/a/model.safetensors" typed while the working directory is the repository
    path = safe_path("runs/a/model.safetensors", roots, [".safetensors"], bases=[tmp_path])
    assert path == roots[0] / "a" / "model.safetensors"
    with pytest.raises(ValueError):
        safe_path("secret.safetensors", roots, [".safetensors"], bases=[tmp_path])  # base alone is not a root


def test_messages_for_the_browser_name_no_server_path(tmp_path, monkeypatch):
    from iceviz.app.paths import for_browser
    from iceviz.app.state import REPO_ROOT

    root = tmp_path / "antarctica"
    root.mkdir()
    monkeypatch.setenv("ICEVIZ_DATA_ROOTS", str(root))
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    text = (f"looked in {root}/diffice, {tmp_path}/cache/data/diffice, {REPO_ROOT}/sample_data and "
            f"{Path.home()}/x.csv")
    shown = for_browser(text)
    assert shown == "looked in antarctica/diffice, <iceviz cache>/data/diffice, <iceviz>/sample_data and ~/x.csv"
    assert str(tmp_path) not in shown and for_browser("no path here") == "no path here"


def test_the_saved_runs_tab_has_a_view_of_every_model_family():
    from iceviz.app.saved_runs import VIEWS, SavedRuns
    from iceviz.training.families import TRAINED

    assert set(VIEWS) == set(TRAINED) and all(callable(getattr(SavedRuns, method)) for method in VIEWS.values())
