"""Where iceviz keeps what it can recompute (base map rasters, simulator spin-ups)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np


def user_dir(override: str, xdg: str, fallback: str) -> Path:
    """``$override``, else ``$xdg/iceviz``, else ``~/fallback/iceviz``: where iceviz keeps one kind of file."""
    env = os.environ.get(override)
    if env:
        return Path(env).expanduser()
    base = os.environ.get(xdg)
    return (Path(base).expanduser() if base else Path.home() / fallback) / "iceviz"


def cache_dir() -> Path:
    """$ICEVIZ_CACHE, else $XDG_CACHE_HOME/iceviz, else ~/.cache/iceviz."""
    return user_dir("ICEVIZ_CACHE", "XDG_CACHE_HOME", ".cache")


def file_key(path: Path, *extra: object) -> str:
    """A short hash naming what was derived from the file ``path`` as it is now (its resolved path, size and
    modification time, and ``extra``): a changed file gets a new key, so stale derivations are never reused."""
    st = path.stat()
    parts = [path.resolve(), st.st_size, st.st_mtime_ns, *extra]
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def write_npz(path: Path, **arrays) -> bool:
    """Write arrays to ``path`` atomically (a temporary file, then a rename); False if it could not be written.

    An unwritable cache only means recomputing next time, so OS errors are not raised.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False
