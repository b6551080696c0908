"""Validating file paths typed or uploaded in the app: no traversal, only supported data files."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Iterable

from iceviz.data.roots import data_roots, inside, product_folders

RUN_SUFFIXES = (".safetensors",)
DATA_SUFFIXES = (".csv", ".nc")


def allowed_roots(repo_root: Path) -> list[Path]:
    """Directories the app may read user-named files from: the repo's runs/ and sample_data/,
    ./runs under the working directory, and $ICEVIZ_DATA when set."""
    roots = [repo_root / "runs", repo_root / "sample_data", Path.cwd() / "runs"]
    if os.environ.get("ICEVIZ_DATA"):
        roots.append(Path(os.environ["ICEVIZ_DATA"]))
    return list(dict.fromkeys(r.resolve() for r in roots))  # once each (the repo's runs/ is often ./runs)


FOLDERS_TTL_S = 60.0
"""How long one walk of the data roots serves every session [s] (a new folder shows within a minute)."""
_folders: tuple[tuple[Path, ...], float, Future] | None = None
_folders_lock = threading.Lock()


def offered_folders() -> Future:
    """The folders under the server's data roots that hold product-like files, and the walk's notes
    (:func:`iceviz.data.roots.product_folders`): walked in a thread, bounded in time and size, shared by every
    session for ``FOLDERS_TTL_S`` (or until the roots change)."""
    global _folders
    roots = tuple(data_roots())
    with _folders_lock:
        now = time.monotonic()
        if _folders is None or _folders[0] != roots or now - _folders[1] > FOLDERS_TTL_S:
            future: Future = Future()

            def walk() -> None:
                try:
                    future.set_result(product_folders(roots))
                except Exception as err:  # noqa: BLE001 - the app offers nothing rather than failing
                    future.set_result(([], [f"the data folders could not be looked at ({type(err).__name__})"]))

            threading.Thread(target=walk, daemon=True, name="iceviz-data-folders").start()
            _folders = (roots, now, future)
        return _folders[2]


def for_browser(text: str) -> str:
    """``text`` (a message) with the server's own paths put in words a browser user may see: a data root as
    its name, the iceviz cache as ``<iceviz cache>``, the repository as ``<iceviz>``, the home folder as ``~``
    (the longest first, so the most specific name wins)."""
    from iceviz.app.state import REPO_ROOT
    from iceviz.cache import cache_dir

    names = {str(root): root.name for root in data_roots()}
    names.update({str(cache_dir().expanduser().resolve()): "<iceviz cache>", str(cache_dir().expanduser()):
                  "<iceviz cache>", str(REPO_ROOT): "<iceviz>", str(Path.home()): "~"})
    for path in sorted(names, key=len, reverse=True):
        if len(path) > 1:
            text = text.replace(path, names[path])
    return text


def find_runs(roots: Iterable[Path], limit: int = 200) -> list[Path]:
    """Saved runs (``model.safetensors`` files) at most three folders deep under ``roots``, newest first."""
    roots = list(roots)
    found: set[Path] = set()
    for root in roots:
        for pattern in ("model.safetensors", "*/model.safetensors", "*/*/model.safetensors",
                        "*/*/*/model.safetensors"):
            found.update(p.resolve() for p in Path(root).glob(pattern)
                         if p.is_file() and inside(p, roots))  # a link out of the roots is not a run
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:limit]


def safe_path(text: str, roots: Iterable[Path], suffixes: Iterable[str], must_exist: bool = True,
              bases: Iterable[Path] = ()) -> Path:
    """The resolved path for ``text`` if it lies inside one of ``roots`` and has an allowed suffix.

    Relative paths are taken relative to each of ``bases`` (e.g. the working
    directory, so that ``runs/x`` works) and then each root. Raises ValueError
    (naming the path and the rule it broke) for anything else: traversal out
    of the roots, symlinks pointing outside, other file types, missing files.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("no path given")
    if "\x00" in text:
        raise ValueError("the path contains a NUL character")
    roots = [Path(r).resolve() for r in roots]
    suffixes = tuple(s.lower() for s in suffixes)
    raw = Path(text).expanduser()
    for candidate in _candidates(raw, roots, bases):
        resolved = candidate.resolve()
        if not inside(resolved, roots):
            continue
        if resolved.suffix.lower() not in suffixes:
            raise ValueError(f"{text}: only {', '.join(suffixes)} files are accepted")
        if must_exist and not resolved.is_file():
            continue
        return resolved
    where = _named(roots)
    if raw.is_absolute() or ".." in raw.parts:
        raise ValueError(f"{text}: outside the allowed folders ({where})")
    raise ValueError(f"{text}: no such file in the allowed folders ({where})")


def safe_folder(text: str, roots: Iterable[Path], bases: Iterable[Path] = ()) -> Path:
    """The resolved folder ``text`` names if it lies inside one of ``roots`` (relative: from each of ``bases``,
    then each root); ValueError otherwise, naming the roots by name only and never saying whether a folder
    outside them exists."""
    text = (text or "").strip()
    if not text or "\x00" in text:
        raise ValueError("no usable folder name given")
    roots = [Path(r).resolve() for r in roots]
    for candidate in _candidates(Path(text).expanduser(), roots, bases):
        if inside(candidate, roots) and candidate.resolve().is_dir():
            return candidate.resolve()
    raise ValueError(f"{text}: not a folder inside the allowed folders ({_named(roots)})")


def _candidates(raw: Path, roots: list[Path], bases: Iterable[Path]) -> list[Path]:
    """Where a typed path may point: itself when absolute, else under each of ``bases``, then each root."""
    return [raw] if raw.is_absolute() else [Path(b) / raw for b in bases] + [root / raw for root in roots]


def _named(roots: list[Path]) -> str:
    """The allowed folders by name, for a message (the server's own paths are not shown)."""
    return ", ".join(f"{r.name}/" for r in roots)
