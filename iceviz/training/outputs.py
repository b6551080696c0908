"""The output folder of ``iceviz train --out DIR``: claimed before training, written whole after it.

Before any training the folder is created, checked writable (a probe file written and deleted) and locked
(``DIR/.iceviz-run.lock``, made with ``O_CREAT | O_EXCL``, holding the run's pid, host and start time), so a
second run into it is refused instead of mixing its files with the first one's. After training every file is
written to a temporary name in the folder and renamed into place only when all of them were written, the
completion mark (``metrics.json``) last: a run folder with a ``metrics.json`` is a complete one. When the files
cannot be written (a full disk, permissions changed meanwhile), the model is saved to the user cache
(``rescued/``, else the temporary folder) and the error says where.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iceviz.cache import cache_dir

LOCK_NAME = ".iceviz-run.lock"
RESCUED = ("model.safetensors", "metrics.json")
"""The files saved elsewhere when a run folder cannot be written: the model and its scores."""

Writer = Callable[[Path], Any]
"""Writes one output file to the path it is given."""


class OutputError(ValueError):
    """An output folder that cannot be used (not writable, or in use by another run); found before training."""


class SaveError(Exception):
    """Outputs that could not be written after training; ``rescued`` is the folder the model went to, if any."""

    def __init__(self, message: str, rescued: Path | None):
        super().__init__(message)
        self.rescued = rescued


@contextmanager
def claimed_folder(out: Path) -> Iterator[Path]:
    """``out`` created, checked writable and locked for this run; the lock removed on leaving, also on errors.

    Raises
    ------
    OutputError
        When ``out`` is a file, is not writable, or is locked by a live run.
    """
    out = Path(out).expanduser()
    check_writable(out)
    lock = acquire_lock(out)
    try:
        yield out
    finally:
        release_lock(lock)


def check_writable(out: Path) -> None:
    """Create ``out`` and write and delete a probe file in it; OutputError saying why when that fails."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".iceviz-probe.", suffix=".tmp", dir=out)
        try:
            os.write(fd, b"iceviz write probe\n")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise _not_writable(out, err) from None


def _not_writable(out: Path, err: OSError) -> OutputError:
    """The error for an ``out`` that ``err`` stopped this process writing to."""
    return OutputError(f"--out {out} is not writable ({err.strerror or err}): choose another --out")


def acquire_lock(out: Path) -> Path:
    """Lock ``out`` for this process; the lock file. A lock left by a dead process on this host is taken over.

    Raises
    ------
    OutputError
        When another run holds the lock (the message names it), or the lock cannot be written.
    """
    lock = out / LOCK_NAME
    for _ in range(3):  # a stale lock set aside, or one that vanished meanwhile: try again
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            if holder is not None and not _is_stale(holder):
                raise OutputError(_in_use_message(out, lock, holder)) from None
            if holder is not None:
                _set_aside(lock, holder)
            continue
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(_this_run()) + "\n")
        except OSError as err:
            lock.unlink(missing_ok=True)
            raise _not_writable(out, err) from None
        return lock
    raise OutputError(_in_use_message(out, lock, _read_lock(lock) or {}))


def release_lock(lock: Path) -> None:
    """Remove ``lock`` if this process holds it."""
    holder = _read_lock(lock)
    if holder is not None and holder.get("pid") == os.getpid():
        lock.unlink(missing_ok=True)


def _read_lock(lock: Path) -> dict[str, Any] | None:
    """The run a lock file names (``pid``, ``host``, ``started``; a bare pid is read too), {} when it names none
    (being written, or garbled); None when there is no lock file."""
    try:
        text = lock.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    if isinstance(record, int) and not isinstance(record, bool):
        return {"pid": record}
    return record if isinstance(record, dict) else {}


def _is_stale(holder: Mapping[str, Any]) -> bool:
    """Whether a lock's run is known to be gone: a process of this host that no longer exists.

    A lock naming no process, or a process of another host (a shared disk), is never stale: it cannot be checked.
    """
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if holder.get("host", socket.gethostname()) != socket.gethostname():
        return False
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (always True on Windows, where it cannot be asked safely)."""
    if os.name == "nt":  # os.kill(pid, 0) would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _in_use_message(out: Path, lock: Path, holder: Mapping[str, Any]) -> str:
    """Why ``out`` is refused: which run holds it, and what to do."""
    if "pid" not in holder:
        return (f"--out {out} is in use by another iceviz run (its lock {lock} names no process; delete it if "
                f"no run uses this folder): choose another --out")
    where = "this machine" if holder.get("host", socket.gethostname()) == socket.gethostname() else holder["host"]
    since = f", started {holder['started']}" if "started" in holder else ""
    return (f"--out {out} is in use by another iceviz run (pid {holder['pid']} on {where}{since}; lock {lock}): "
            f"choose another --out, or wait for that run to end")


def _this_run() -> dict[str, Any]:
    """What this process writes into a lock."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _set_aside(lock: Path, stale: Mapping[str, Any]) -> None:
    """Remove the stale lock ``stale``; a lock another run made meanwhile (it took the stale one over first) is
    put back, so that only one of the runs that found the stale lock gets the folder."""
    aside = lock.with_name(f"{lock.name}.{os.getpid()}.stale")
    try:
        os.replace(lock, aside)
    except FileNotFoundError:  # already removed by another run
        return
    if _read_lock(aside) == stale:
        aside.unlink(missing_ok=True)
    else:
        os.replace(aside, lock)


def write_files(folder: Path, writers: Mapping[str, Writer]) -> None:
    """Write each file of ``writers`` (name -> writer) under ``folder`` atomically.

    Every file is first written to a temporary name in ``folder``; only when all were written are they renamed
    into place, in the order given, after the last one (the folder's completion mark) was removed. When a file
    cannot be written, or on Ctrl-C, the temporary files are removed and the files in ``folder`` are left as
    they were.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in writers.items():
            tmp = folder / f".{name}.{uuid.uuid4().hex[:12]}.tmp"
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the mode a plain file gets
            staged.append((tmp, folder / name))
            write(tmp)
        staged[-1][1].unlink(missing_ok=True)
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise


def rescue_roots() -> tuple[Path, Path]:
    """Where :func:`rescue` saves a model, in order of preference: the user cache, else the temporary folder."""
    return cache_dir() / "rescued", Path(tempfile.gettempdir()) / "iceviz-rescued"


def rescue(writers: Mapping[str, Writer], label: str) -> Path | None:
    """Write ``writers`` into a new folder ``<cache>/rescued/<timestamp>-<label>-*`` (else under the temporary
    folder); that folder, or None when neither place took them."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for root in rescue_roots():
        where = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            where = Path(tempfile.mkdtemp(prefix=f"{stamp}-{label}-", dir=root))
            write_files(where, writers)
            return where
        except Exception:  # noqa: BLE001 - whatever stopped it there, try the next place
            if where is not None:
                shutil.rmtree(where, ignore_errors=True)
    return None


def save_run(out: Path, writers: Mapping[str, Writer], label: str, keep: tuple[str, ...] = RESCUED,
             what: str = "the trained model") -> Path:
    """Write a run's files into ``out`` (see :func:`write_files`); ``out``.

    Parameters
    ----------
    keep : the files saved elsewhere when ``out`` cannot take them (the first named in the message).
    what : what those files are, for the message.

    Raises
    ------
    SaveError
        When they cannot be written: the ``keep`` files were rescued (see :func:`rescue`) and the message says
        where, or that they could not be saved anywhere.
    """
    try:
        write_files(out, writers)
    except Exception as err:  # noqa: BLE001 - OSError, DataError, safetensors' errors alike: never lose the model
        reason = f"{type(err).__name__}: {err}"
        kept_files = [name for name in keep if name in writers]
        where = rescue({name: writers[name] for name in kept_files}, label) if kept_files else None
        with_rest = f" (with {', '.join(kept_files[1:])})" if kept_files[1:] else ""
        kept = (f"{what} was saved to {where / kept_files[0]} instead{with_rest}" if where
                else f"{what} could not be saved anywhere else either (tried "
                     + " and ".join(map(str, rescue_roots())) + ")")
        raise SaveError(f"cannot write the outputs to {out} ({reason}); {kept}", where) from None
    return out
