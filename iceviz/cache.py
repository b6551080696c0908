"""Where iceviz keeps what it can recompute (base map rasters, simulator spin-ups)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """$ICEVIZ_CACHE, else $XDG_CACHE_HOME/iceviz, else ~/.cache/iceviz."""
    env = os.environ.get("ICEVIZ_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "iceviz"
    return Path.home() / ".cache" / "iceviz"


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
