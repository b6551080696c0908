"""Validating file paths typed or uploaded in the app: no traversal, only supported data files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

RUN_SUFFIXES = (".safetensors",)
DATA_SUFFIXES = (".csv", ".nc")


def allowed_roots(repo_root: Path) -> list[Path]:
    """Directories the app may read user-named files from: the repo's runs/ and sample_data/,
    ./runs under the working directory, and $ICEVIZ_DATA when set."""
    roots = [repo_root / "runs", repo_root / "sample_data", Path.cwd() / "runs"]
    if os.environ.get("ICEVIZ_DATA"):
        roots.append(Path(os.environ["ICEVIZ_DATA"]))
    return list(dict.fromkeys(r.resolve() for r in roots))  # once each (the repo's runs/ is often ./runs)


def find_runs(roots: Iterable[Path], limit: int = 200) -> list[Path]:
    """Saved runs (``model.safetensors`` files) at most three folders deep under ``roots``, newest first."""
    found: set[Path] = set()
    for root in roots:
        for pattern in ("model.safetensors", "*/model.safetensors", "*/*/model.safetensors",
                        "*/*/*/model.safetensors"):
            found.update(p.resolve() for p in Path(root).glob(pattern) if p.is_file())
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
    candidates = [raw] if raw.is_absolute() else [Path(b) / raw for b in bases] + [root / raw for root in roots]
    for candidate in candidates:
        resolved = candidate.resolve()
        inside = any(resolved == root or root in resolved.parents for root in roots)
        if not inside:
            continue
        if resolved.suffix.lower() not in suffixes:
            raise ValueError(f"{text}: only {', '.join(suffixes)} files are accepted")
        if must_exist and not resolved.is_file():
            continue
        return resolved
    where = ", ".join(str(r) for r in roots)
    if raw.is_absolute() or ".." in raw.parts:
        raise ValueError(f"{text}: outside the allowed folders ({where})")
    raise ValueError(f"{text}: no such file in the allowed folders ({where})")
