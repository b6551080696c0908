"""The server's data roots, and walking folders under a time and size bound.

Whoever starts iceviz decides which folders it may read product files from:
``$ICEVIZ_DATA_ROOTS`` (folders separated by ``os.pathsep``), the folders
recorded with ``iceviz data add``, ``$ICEVIZ_DATA``, ``../shared/data`` beside
the working directory and the fetched public data (``iceviz data fetch``). The
app lets a browser user pick among what lies under them and nothing else.

:func:`walk_files` lists the files under a folder the way a shared server can
afford: without following links out of it, skipping (and noting) folders it
cannot read, and stopping (with a note) after a time or a number of entries.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from iceviz.data import settings
from iceviz.data.locations import fetched_root
from iceviz.data.problem import DataError

ROOTS_VAR = "ICEVIZ_DATA_ROOTS"
WALK_SECONDS = 2.0
"""How long one walk may take before it stops with a note [s]."""
WALK_ENTRIES = 50_000
"""How many folder entries one walk may look at before it stops with a note."""


def inside(path: Path, roots: Iterable[Path]) -> bool:
    """Whether ``path``, resolved (links followed), is one of ``roots`` or lies under one."""
    resolved = Path(path).resolve()
    return any(resolved == root or root in resolved.parents for root in (Path(r).resolve() for r in roots))


def shown_path(path: Path, roots: Iterable[Path]) -> str:
    """``path`` as a browser user may see it: ``ROOT-NAME/relative/path`` under one of ``roots``, else its name
    alone (a server's own paths are not shown)."""
    resolved = Path(path).resolve()
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or root in resolved.parents:
            return str(Path(root.name) / resolved.relative_to(root))
    return resolved.name


def data_roots() -> list[Path]:
    """The folders product files may be picked from (existing ones, resolved, each once, in the order above)."""
    candidates = [Path(p) for p in os.environ.get(ROOTS_VAR, "").split(os.pathsep) if p.strip()]
    try:
        candidates += [p for p in settings.read_paths() if p.is_dir()]
    except DataError:
        pass  # a broken settings file is reported by the catalogue; it adds no roots
    if os.environ.get("ICEVIZ_DATA"):
        candidates.append(Path(os.environ["ICEVIZ_DATA"]))
    candidates += [Path.cwd().parent / "shared" / "data", fetched_root()]
    return list(dict.fromkeys(p.expanduser().resolve() for p in candidates if p.expanduser().is_dir()))


@dataclass
class Walk:
    """The files a walk found (sorted) and what it skipped or where it stopped, one note each."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def walk_files(root: Path, suffixes: tuple[str, ...], seconds: float = WALK_SECONDS,
               entries: int = WALK_ENTRIES) -> Walk:
    """The files with one of ``suffixes`` (lower case, with the dot) under the folder ``root``.

    Links are not followed into folders (a link may lead anywhere); unreadable folders are skipped with a
    note; the walk stops with a note after ``seconds`` or ``entries`` folder entries. Notes name folders
    relative to ``root``.
    """
    root = Path(root)
    out = Walk()
    deadline, seen = time.monotonic() + seconds, 0
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    seen += 1
                    if seen > entries or time.monotonic() > deadline:
                        out.notes.append(f"stopped after {seen - 1:,} entries ({seconds:g} s at most): name a "
                                         "smaller folder")
                        out.files.sort()
                        return out
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif entry.is_file() and Path(entry.name).suffix.lower() in suffixes:
                        if entry.is_symlink() and not inside(Path(entry.path), [root]):
                            out.notes.append(f"skipped {Path(entry.path).relative_to(root)}: a link out of the folder")
                            continue
                        out.files.append(Path(entry.path))
        except OSError as err:  # unreadable, or gone since it was listed
            where = folder.relative_to(root) if folder != root else Path(".")
            out.notes.append(f"skipped {where}: {err.strerror or type(err).__name__}")
    out.files.sort()
    return out


def product_folders(roots: Iterable[Path], seconds: float = WALK_SECONDS) -> tuple[list[Path], list[str]]:
    """The folders under ``roots`` that hold ``.nc`` or ``.csv`` files (what the app offers to use), sorted,
    and the walks' notes (each prefixed with its root's name)."""
    folders: set[Path] = set()
    notes: list[str] = []
    for root in roots:
        walk = walk_files(Path(root), (".nc", ".csv"), seconds=seconds)
        folders.update(f.parent for f in walk.files)
        notes += [f"{Path(root).name}: {note}" for note in walk.notes]
    return sorted(folders), notes
