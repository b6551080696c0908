"""Downloads against a local HTTP server: resume, checksums, content check, login, no network, no leaks."""

from __future__ import annotations

import base64
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from iceviz.data import download as dl
from iceviz.data.problem import DataError


class Server:
    """Serves ``files`` (name -> bytes) with Range support; optional Basic auth; can cut a transfer short."""

    def __init__(self, files: dict[str, bytes], user: tuple[str, str] | None = None):
        self.files, self.user, self.requests, self.cut_after = files, user, [], None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(dict(self.headers))
                if outer.user is not None:
                    token = base64.b64encode(":".join(outer.user).encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        self.send_response(401)
                        self.end_headers()
                        return
                body = outer.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if outer.cut_after is not None:
                    self.wfile.write(part[:outer.cut_after])
                    outer.cut_after = None
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(part)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def velocity_bytes(glacier_products) -> bytes:
    return glacier_products["measures-insar"].read_bytes()


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc


def test_download_checks_and_records_the_file(tmp_path, velocity_bytes, data_home):
    server = Server({"v.nc": velocity_bytes})
    try:
        seen = []
        path = dl.fetch(server.url("v.nc"), tmp_path / "v.nc", product="measures-insar",
                        expected_sha256=hashlib.sha256(velocity_bytes).hexdigest(),
                        progress=lambda done, total: seen.append((done, total)))
    finally:
        server.close()
    assert path.read_bytes() == velocity_bytes and not (tmp_path / "v.nc.part").exists()
    assert seen[-1] == (len(velocity_bytes), len(velocity_bytes))
    assert dl.verify(path)
    path.write_bytes(velocity_bytes[:-1] + b"x")
    assert not dl.verify(path)


def test_an_interrupted_download_resumes(tmp_path, velocity_bytes, data_home):
    server = Server({"v.nc": velocity_bytes})
    server.cut_after = 100_000
    try:
        with pytest.raises(DataError, match="run the command again to resume"):
            dl.fetch(server.url("v.nc"), tmp_path / "v.nc", product="measures-insar")
        part = tmp_path / "v.nc.part"
        assert 0 < part.stat().st_size < len(velocity_bytes)
        had = part.stat().st_size
        dl.fetch(server.url("v.nc"), tmp_path / "v.nc", product="measures-insar")
    finally:
        server.close()
    assert server.requests[-1]["Range"] == f"bytes={had}-"
    assert (tmp_path / "v.nc").read_bytes() == velocity_bytes


def test_a_wrong_checksum_or_a_login_page_is_refused(tmp_path, velocity_bytes, data_home):
    server = Server({"v.nc": velocity_bytes, "login.nc": b"<html><body>Earthdata Login</body></html>"})
    try:
        with pytest.raises(DataError, match="does not match the expected 00ff; the damaged download was removed"):
            dl.fetch(server.url("v.nc"), tmp_path / "v.nc", expected_sha256="00ff")
        assert not (tmp_path / "v.nc.part").exists() and not (tmp_path / "v.nc").exists()
        with pytest.raises(DataError, match="not a MEaSUREs InSAR-based .* HTML page usually means the login"):
            dl.fetch(server.url("login.nc"), tmp_path / "login.nc", product="measures-insar")
        assert not list(tmp_path.glob("login.nc*"))
        with pytest.raises(DataError, match="HTTP 404"):
            dl.fetch(server.url("nothing.nc"), tmp_path / "nothing.nc")
    finally:
        server.close()


def test_login_uses_credentials_without_leaking_them(tmp_path, velocity_bytes, monkeypatch, no_credentials):
    server = Server({"v.nc": velocity_bytes}, user=("alice", "s3cret-pw"))
    try:
        with pytest.raises(DataError, match=r"login refused \(HTTP 401\).*~/.netrc") as err:
            dl.fetch(server.url("v.nc"), tmp_path / "v.nc", auth=dl.credentials())
        monkeypatch.setenv("EARTHDATA_USERNAME", "alice")
        monkeypatch.setenv("EARTHDATA_PASSWORD", "wrong")
        with pytest.raises(DataError, match="check the Earthdata login") as err:
            dl.fetch(server.url("v.nc"), tmp_path / "v.nc", auth=dl.credentials())
        assert "wrong" not in str(err.value) and "alice" not in str(err.value)
        home = tmp_path / "home"
        home.mkdir()
        (home / ".netrc").write_text(f"machine {dl.LOGIN_HOST} login alice password s3cret-pw\n")
        (home / ".netrc").chmod(0o600)
        monkeypatch.delenv("EARTHDATA_USERNAME")
        monkeypatch.delenv("EARTHDATA_PASSWORD")
        assert dl.credentials() == ("alice", "s3cret-pw")
        dl.fetch(server.url("v.nc"), tmp_path / "v.nc", auth=dl.credentials(), product="measures-insar")
    finally:
        server.close()
    assert (tmp_path / "v.nc").read_bytes() == velocity_bytes
    assert "s3cret" not in (tmp_path / "v.nc.sha256").read_text()


def test_no_network_is_a_clear_message(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="cannot connect \\(no network, or the host is unreachable\\)"):
        dl.fetch(f"http://127.0.0.1:{port}/v.nc", tmp_path / "v.nc")


def test_download_command_skips_complete_files_and_explains_bedmap(tmp_path, velocity_bytes, data_home):
    server = Server({"antarctica_ice_velocity_450m_v2.nc": velocity_bytes})
    try:
        url = server.url("antarctica_ice_velocity_450m_v2.nc")
        [path] = dl.download("measures-insar", tmp_path / "dl", url=url)
        assert len(server.requests) == 1
        assert dl.download("measures-insar", tmp_path / "dl", url=url) == [path]
        assert len(server.requests) == 1  # checksum still matches: nothing fetched
    finally:
        server.close()
    with pytest.raises(DataError, match="distributed per campaign .* --url"):
        dl.download("bedmap", tmp_path)
    with pytest.raises(DataError, match="unknown product 'velocity'"):
        dl.download("velocity", tmp_path)
