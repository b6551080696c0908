"""Where iceviz looks for data that is not named by a full path."""

from __future__ import annotations

import os
from pathlib import Path

from iceviz.cache import cache_dir


def data_dirs(name: str) -> list[Path]:
    """Candidate directories for the dataset ``name``: ``$ICEVIZ_DATA/name``, then ``../shared/data/name``
    (beside the working directory), then the fetched copy (:func:`fetched_root`), in that order; they need
    not exist."""
    paths = []
    env = os.environ.get("ICEVIZ_DATA")
    if env:
        paths.append(Path(env).expanduser() / name)
    paths.append(Path.cwd().parent / "shared" / "data" / name)
    paths.append(fetched_root() / name)
    return paths


def fetched_root() -> Path:
    """Where ``iceviz data fetch`` puts the public datasets: ``data`` in the user cache (``$ICEVIZ_CACHE``...)."""
    return cache_dir() / "data"
