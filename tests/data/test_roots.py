"""The server's data roots and bounded folder walks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iceviz.data import roots
from iceviz.data.products import add_paths
from iceviz.data.roots import data_roots, inside, product_folders, shown_path, walk_files


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "root"
    for name in ("a/one.nc", "a/notes.txt", "b/deep/two.csv", "c/locked/three.nc", "top.CSV"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    return root


def test_a_walk_lists_the_wanted_files_and_skips_unreadable_folders_with_a_note(tree, monkeypatch):
    real = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(roots.os, "scandir", scandir)
    walk = walk_files(tree, (".nc", ".csv"))
    assert [p.relative_to(tree).as_posix() for p in walk.files] == ["a/one.nc", "b/deep/two.csv", "top.CSV"]
    assert walk.notes == ["skipped c/locked: Permission denied"]  # relative: no server path


def test_a_walk_stops_at_its_bound_with_a_note(tree):
    walk = walk_files(tree, (".nc",), entries=3)
    assert len(walk.notes) == 1 and walk.notes[0].startswith("stopped after 3 entries")
    assert walk_files(tree, (".nc",), seconds=0.0).notes[0].startswith("stopped after 0 entries")


def test_links_out_of_the_folder_are_not_followed(tree, tmp_path):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "secret.csv").write_text("db_password=x")
    (tree / "to-outside").symlink_to(outside / "sub")  # a folder link: not entered
    (tree / "a" / "leak.csv").symlink_to(outside / "sub" / "secret.csv")  # a file link out: skipped
    (tree / "a" / "alias.nc").symlink_to(tree / "a" / "one.nc")  # a file link inside: kept
    walk = walk_files(tree, (".nc", ".csv"))
    names = [p.name for p in walk.files]
    assert "secret.csv" not in names and "leak.csv" not in names and "alias.nc" in names
    assert any("leak.csv: a link out of the folder" in n for n in walk.notes)


def test_product_folders_inside_and_shown_paths(tree, tmp_path):
    folders, notes = product_folders([tree])
    assert [f.relative_to(tree).as_posix() for f in folders] == [".", "a", "b/deep", "c/locked"] and notes == []
    assert inside(tree / "a" / ".." / "b", [tree]) and not inside(tree / ".." / "x", [tree])
    assert inside(tree, [tree]) and not inside(tmp_path / "rootkit", [tree])  # a prefix is not a parent
    assert shown_path(tree / "b" / "deep", [tree]) == "root/b/deep"
    assert shown_path(Path("/etc/passwd"), [tree]) == "passwd"


def test_data_roots_come_from_the_operator(tmp_path, monkeypatch):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    monkeypatch.setenv("ICEVIZ_DATA_ROOTS", os.pathsep.join([str(one), str(two)]))  # two does not exist
    monkeypatch.setenv("ICEVIZ_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("ICEVIZ_DATA", raising=False)
    assert data_roots()[0] == one.resolve() and two.resolve() not in data_roots()
    recorded = tmp_path / "recorded"
    (recorded / "f.nc").parent.mkdir()
    from iceviz.data import settings

    settings.write_paths([recorded])  # `iceviz data add` records it: a root too
    assert recorded.resolve() in data_roots()


def test_adding_a_folder_with_an_unreadable_subfolder_notes_it_instead_of_failing(tree, monkeypatch, tmp_path):
    monkeypatch.setenv("ICEVIZ_CONFIG_DIR", str(tmp_path / "config"))
    real = os.scandir
    monkeypatch.setattr(roots.os, "scandir",
                        lambda path: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if Path(path).name == "locked" else real(path))
    found, problems = add_paths([tree])
    assert found == [] and any("skipped c/locked: Permission denied" in p for p in problems)
