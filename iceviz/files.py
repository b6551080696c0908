"""What every layer that reads files shares: one-line reports of a reader's failure."""

from __future__ import annotations


def backend_failure(exc: BaseException) -> str:
    """A NetCDF backend's error in one line, without the advice on engines xarray appends to some."""
    first = (str(exc).splitlines() or [""])[0].split(" Consider explicitly selecting")[0]
    return f"{type(exc).__name__}: {first}"
