"""Where iceviz looks for data that is not named by a full path."""

from __future__ import annotations

import os
from pathlib import Path


def data_dirs(name: str) -> list[Path]:
    """Candidate directories for the dataset ``name``: ``$ICEVIZ_DATA/name``, then ``../shared/data/name``
    (beside the working directory), in that order; they need not exist."""
    paths = []
    env = os.environ.get("ICEVIZ_DATA")
    if env:
        paths.append(Path(env).expanduser() / name)
    paths.append(Path.cwd().parent / "shared" / "data" / name)
    return paths
