"""Where the user's real data files are: a settings file, environment variables, spec options.

The settings file is ``data.json`` in the user's config directory
(``$ICEVIZ_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/iceviz``, else
``~/.config/iceviz``); ``iceviz data add PATH`` writes to it. Environment
variables add more paths without touching the file, one per product, several
paths separated by ``os.pathsep``:

==========================  ==================================================
``ICEVIZ_MEASURES_INSAR``   MEaSUREs InSAR-based velocity (NSIDC-0484)
``ICEVIZ_MEASURES_PHASE``   MEaSUREs phase-based velocity (NSIDC-0754)
``ICEVIZ_BEDMACHINE``       BedMachine Antarctica (NSIDC-0756)
``ICEVIZ_BEDMAP``           Bedmap 1-3 standardised survey CSVs (files or folders)
==========================  ==================================================

Only paths are stored (never credentials). The file is written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from iceviz.cache import user_dir
from iceviz.data.problem import DataError

SETTINGS_VERSION = 1
SETTINGS_NAME = "data.json"
ENV_VARS = {
    "measures-insar": "ICEVIZ_MEASURES_INSAR",
    "measures-phase": "ICEVIZ_MEASURES_PHASE",
    "bedmachine": "ICEVIZ_BEDMACHINE",
    "bedmap": "ICEVIZ_BEDMAP",
}


def config_dir() -> Path:
    """$ICEVIZ_CONFIG_DIR, else $XDG_CONFIG_HOME/iceviz, else ~/.config/iceviz."""
    return user_dir("ICEVIZ_CONFIG_DIR", "XDG_CONFIG_HOME", ".config")


def settings_path() -> Path:
    return config_dir() / SETTINGS_NAME


def read_paths(path: Path | None = None) -> list[Path]:
    """The data paths recorded in the settings file (an empty list when there is no file)."""
    path = path or settings_path()
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the iceviz data settings: {exc}; fix or delete the file") from None
    paths = doc.get("paths") if isinstance(doc, dict) else None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise DataError(f"{path}: malformed iceviz data settings: expected {{\"paths\": [...]}}; fix or delete the file")
    return [Path(p) for p in paths]


def write_paths(paths: list[Path], path: Path | None = None) -> Path:
    """Record ``paths`` (absolute, no duplicates, order kept) in the settings file, atomically."""
    path = path or settings_path()
    unique = list(dict.fromkeys(str(Path(p).expanduser().resolve()) for p in paths))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".data.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": SETTINGS_VERSION, "paths": unique}, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def env_paths() -> dict[str, list[Path]]:
    """Product key -> the paths its environment variable names (only variables that are set)."""
    out: dict[str, list[Path]] = {}
    for product, var in ENV_VARS.items():
        value = os.environ.get(var, "")
        paths = [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
        if paths:
            out[product] = paths
    return out
