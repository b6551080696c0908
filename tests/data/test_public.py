"""``iceviz data fetch`` against a local mirror: checked downloads, refusals, and specs that need no path after."""

from __future__ import annotations

import functools
import hashlib
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iceviz.cli import main
from iceviz.data import public
from iceviz.data.problem import DataError
from iceviz.data.public import DATASETS, PublicDataset, RemoteFile


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server on ``tmp_path/mirror``; yields (root folder, base URL)."""
    root = tmp_path / "mirror"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ICEVIZ_DATA", raising=False)
    return tmp_path / "cache"


def publish(root: Path, f: RemoteFile, content: bytes) -> None:
    path = root / f.repo / f.commit / f.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@pytest.fixture
def toy(monkeypatch) -> tuple[PublicDataset, bytes]:
    """A one-file dataset registered for the test."""
    content = b"ice flux " * 1000
    f = RemoteFile("owner/repo", "c0ffee", "data/toy.bin", hashlib.sha256(content).hexdigest(), len(content))
    d = PublicDataset("toy", "toy", (f,), "toy:", "a toy dataset")
    monkeypatch.setitem(DATASETS, "toy", d)
    return d, content


def test_fetch_downloads_checks_and_keeps(mirror, cache, toy):
    root, base = mirror
    d, content = toy
    publish(root, d.files[0], content)
    assert not public.is_fetched("toy")
    [path] = public.fetch("toy", base)
    assert path == cache / "data" / "toy" / "toy.bin" and path.read_bytes() == content
    assert public.is_fetched("toy")
    (root / d.files[0].repo).rename(root / "gone")  # a second fetch needs no server
    assert public.fetch("toy", base) == [path]


def test_a_file_with_another_checksum_is_refused_and_deleted(mirror, cache, toy):
    root, base = mirror
    d, content = toy
    tampered = content[:-1] + b"!"
    publish(root, d.files[0], tampered)
    with pytest.raises(DataError) as err:
        public.fetch("toy", base)
    message = str(err.value)
    assert d.files[0].sha256 in message and hashlib.sha256(tampered).hexdigest() in message and "deleted" in message
    assert not list((cache / "data" / "toy").glob("*"))


def test_missing_file_offline_and_foreign_schemes_say_what_to_do(mirror, cache, toy):
    _, base = mirror
    with pytest.raises(DataError, match="answered HTTP 404.*put it at .*toy.bin"):
        public.fetch("toy", base)
    with pytest.raises(DataError, match="could not download http://127.0.0.1:9/.*raw.githubusercontent.com"):
        public.fetch("toy", "http://127.0.0.1:9")
    with pytest.raises(DataError, match="http:// or https://"):
        public.fetch("toy", "file:///etc")
    with pytest.raises(DataError, match="unknown dataset 'nope'; known: byrd-mcor"):
        public.fetch("nope", base)


def test_mirror_addresses_are_shown_without_their_secrets(cache, toy):
    lines: list[str] = []
    with pytest.raises(DataError, match=r"could not download https://\*\*\*@127\.0\.0\.1:9/owner/repo/") as err:
        public.fetch("toy", "https://alice:pa55word@127.0.0.1:9", progress=lines.append)
    assert lines and not any("pa55word" in text or "alice" in text for text in (*lines, str(err.value)))
    with pytest.raises(DataError, match=r"--from http://\*\*\*@127\.0\.0\.1:9: a user or password in an http:// "
                                        r"address would travel in clear; a mirror is an http:// or https://") as err:
        public.fetch("toy", "http://alice:pa55word@127.0.0.1:9")
    assert "pa55word" not in str(err.value)
    with pytest.raises(DataError, match="--from ftp://host.org: ftp:// addresses are not supported; a mirror is"):
        public.fetch("toy", "ftp://host.org")


def test_fetched_byrd_loads_from_any_directory(mirror, cache, byrd_dir, tmp_path, monkeypatch, capsys):
    root, base = mirror
    d = DATASETS["byrd-mcor"]
    for f in d.files:
        publish(root, f, (byrd_dir / f.name).read_bytes())
    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # no ../shared/data from here
    from iceviz.data.specs import load_problem

    with pytest.raises(DataError, match="iceviz data fetch byrd-mcor"):
        load_problem("byrd-mcor:")
    assert main(["data", "fetch", "byrd-mcor", "--from", base]) == 0
    assert "use it as --data byrd-mcor:" in capsys.readouterr().err
    problem = load_problem("byrd-mcor:")
    assert len(problem.train) > 1000 and problem.direction is not None


def test_fetched_shelf_is_offered_by_the_viscosity_presets(mirror, cache, diffice_dir, tmp_path, monkeypatch):
    from iceviz.app.shelf_presets import PRESETS

    root, base = mirror
    monkeypatch.chdir(tmp_path)
    amery = PRESETS["Amery"]
    assert "iceviz data fetch amery" in amery.unavailable()
    f = DATASETS["amery"].files[0]
    shutil.copy(diffice_dir / f.name, tmp_path / f.name)
    publish(root, f, (tmp_path / f.name).read_bytes())
    public.fetch("amery", base)
    assert amery.unavailable() is None


def test_fetch_without_a_name_lists_the_datasets(cache, capsys):
    assert main(["data", "fetch"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("byrd-mcor", "diffice-synthetic", "amery", "larsen-c"))
