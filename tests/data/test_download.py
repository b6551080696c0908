"""Downloads against a local HTTP server: resume, checksums, content check, login, no network, no leaks; where
credentials may go, redacted addresses, refused schemes."""

from __future__ import annotations

import base64
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from iceviz.data import download as dl
from iceviz.data.problem import DataError

PRODUCT_URL = dl.PRODUCTS["measures-insar"].urls[0]


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
    for var in ("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "ICEVIZ_CREDENTIAL_HOSTS"):
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


def test_login_hints_and_credentials_withheld_from_http(tmp_path, velocity_bytes, monkeypatch, no_credentials):
    server = Server({"v.nc": velocity_bytes}, user=("alice", "s3cret-pw"))
    try:
        with pytest.raises(DataError, match=r"login refused \(HTTP 401\).*~/.netrc"):
            dl.fetch(server.url("v.nc"), tmp_path / "v.nc", auth=dl.credentials())
        monkeypatch.setenv("EARTHDATA_USERNAME", "alice")
        monkeypatch.setenv("EARTHDATA_PASSWORD", "s3cret-pw")
        with pytest.raises(DataError, match=r"credentials were withheld from 127\.0\.0\.1: they go only over "
                                            r"https:// .*ICEVIZ_CREDENTIAL_HOSTS.*; to allow it, use an https:// "
                                            r"address and add 127\.0\.0\.1 to \$ICEVIZ_CREDENTIAL_HOSTS$") as err:
            dl.fetch(server.url("v.nc"), tmp_path / "v.nc", auth=dl.credentials())
        assert "s3cret" not in str(err.value) and "alice" not in str(err.value)
        monkeypatch.setenv("ICEVIZ_CREDENTIAL_HOSTS", "127.0.0.1")  # a named host still gets nothing over http
        with pytest.raises(DataError, match="to allow it, use an https:// address$"):
            dl.fetch(server.url("v.nc"), tmp_path / "v.nc", auth=dl.credentials())
    finally:
        server.close()
    assert not any("Authorization" in headers for headers in server.requests)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine {dl.LOGIN_HOST} login alice password s3cret-pw\n")
    (home / ".netrc").chmod(0o600)
    monkeypatch.delenv("EARTHDATA_USERNAME")
    monkeypatch.delenv("EARTHDATA_PASSWORD")
    assert dl.credentials() == ("alice", "s3cret-pw")
    basic = base64.b64encode(b"alice:s3cret-pw").decode()
    assert dl.credentials_for(PRODUCT_URL, dl.credentials()) == {"Authorization": f"Basic {basic}"}


def test_a_token_is_not_sent_to_an_http_address(tmp_path, velocity_bytes, monkeypatch, no_credentials, data_home):
    monkeypatch.setenv("EARTHDATA_TOKEN", "tok-123")
    monkeypatch.setenv("ICEVIZ_CREDENTIAL_HOSTS", "127.0.0.1")
    server = Server({"antarctica_ice_velocity_450m_v2.nc": velocity_bytes})
    try:
        [path] = dl.download("measures-insar", tmp_path / "dl", url=server.url("antarctica_ice_velocity_450m_v2.nc"))
    finally:
        server.close()
    assert path.read_bytes() == velocity_bytes
    assert len(server.requests) == 1 and "Authorization" not in server.requests[0]


def test_credentials_go_only_over_https_to_earthdata_and_named_hosts(monkeypatch):
    monkeypatch.delenv("ICEVIZ_CREDENTIAL_HOSTS", raising=False)
    bearer = {"Authorization": "Bearer tok"}
    assert dl.EARTHDATA_HOSTS == {"urs.earthdata.nasa.gov", "n5eil01u.ecs.nsidc.org"}
    assert dl.credentials_for(PRODUCT_URL, "tok") == bearer
    assert dl.credentials_for(f"https://{dl.LOGIN_HOST}/oauth/authorize?client_id=x", "tok") == bearer
    assert dl.credentials_for(PRODUCT_URL, None) is None
    for url in (PRODUCT_URL.replace("https://", "http://"), "https://mirror.example.org/v.nc",
                "https://n5eil01u.ecs.nsidc.org.example.org/v.nc", "https://n5eil01u.ecs.nsidc.org@example.org/v.nc",
                "https://example.org/?n5eil01u.ecs.nsidc.org", "http://127.0.0.1:8000/v.nc"):
        assert dl.credentials_for(url, "tok") is None, url
    monkeypatch.setenv("ICEVIZ_CREDENTIAL_HOSTS", " Mirror.Example.org ,, other.example.org")
    assert dl.credentials_for("https://mirror.example.org:8443/v.nc", "tok") == bearer
    assert dl.credentials_for("http://mirror.example.org/v.nc", "tok") is None


def test_a_redirect_to_another_host_drops_credentials():
    import requests

    session = dl._session("tok", dl.EARTHDATA_HOSTS)

    def after_redirect(url: str) -> str | None:
        prepared = requests.Request("GET", url, headers={"Authorization": "Bearer tok"}).prepare()
        session.rebuild_auth(prepared, None)
        return prepared.headers.get("Authorization")

    assert after_redirect(f"https://{dl.LOGIN_HOST}/oauth/authorize") == "Bearer tok"
    assert after_redirect(PRODUCT_URL) == "Bearer tok"
    assert after_redirect("https://elsewhere.example.org/v.nc") is None
    assert after_redirect(PRODUCT_URL.replace("https://", "http://")) is None  # no downgrade to http either
    prepared = requests.Request("GET", PRODUCT_URL).prepare()  # back on an allowed host: decided afresh
    session.rebuild_auth(prepared, None)
    assert prepared.headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize("url, shown", [
    ("https://user:pw@host.org:8443/a/b.nc?x=1", "https://***@host.org:8443/a/b.nc?x=1"),
    ("https://tok@host.org/b.nc", "https://***@host.org/b.nc"),
    ("ftp://u:p@host.org/b.nc", "ftp://***@host.org/b.nc"),
    ("https://host.org/f?token=abc&name=v&api_key=k&Signature=s&sig=1&keyword=ice",
     "https://host.org/f?token=***&name=v&api_key=***&Signature=***&sig=***&keyword=ice"),
    ("https://b.s3.amazonaws.com/f.nc?X-Amz-Credential=AK%2F1&X-Amz-Security-Token=T&X-Amz-Signature=S&"
     "response-content-type=nc", "https://b.s3.amazonaws.com/f.nc?X-Amz-Credential=***&X-Amz-Security-Token=***&"
     "X-Amz-Signature=***&response-content-type=nc"),
    ("https://host.org/f?access%5Ftoken=abc&PASSWORD=pw&pass=p&apikey=k&auth=a&credentials=c&secret=s&key=k",
     "https://host.org/f?access%5Ftoken=***&PASSWORD=***&pass=***&apikey=***&auth=***&credentials=***&secret=***&"
     "key=***"),
    ("https://host.org/cb#access_token=abc&state=1", "https://host.org/cb#access_token=***&state=1"),
    ("http://127.0.0.1:8000/v.nc?token", "http://127.0.0.1:8000/v.nc?token"),
    ("https://[::1/v.nc", "***"),
])
def test_redact_url(url, shown):
    assert dl.redact_url(url) == shown


def test_secrets_in_addresses_never_show(tmp_path, velocity_bytes, no_credentials):
    server = Server({"v.nc": velocity_bytes})
    try:
        with pytest.raises(DataError, match=r"HTTP 404 .*/x\.nc\?token=\*\*\*&v=1&X-Amz-Signature=\*\*\*$") as err:
            dl.fetch(server.url("x.nc?token=abc&v=1&X-Amz-Signature=def"), tmp_path / "x.nc")
        assert "abc" not in str(err.value) and "def" not in str(err.value)
        server.user = ("alice", "s3cret-pw")
        with pytest.raises(DataError, match=r"login refused.*/v\.nc\?api_key=\*\*\*;") as err:
            dl.fetch(server.url("v.nc?api_key=abc"), tmp_path / "v.nc")
        assert "abc" not in str(err.value)
        with pytest.raises(DataError, match=r"cannot download http://\*\*\*@127\.0\.0\.1:\d+/v\.nc: a user or password "
                                            r"in an http:// address would travel in clear; use https://") as err:
            dl.fetch(server.url("v.nc").replace("//", "//alice:pa55word@"), tmp_path / "v.nc")
        assert "pa55word" not in str(err.value) and "alice" not in str(err.value)
        assert len(server.requests) == 2  # the http:// address with a password was refused before any request
        closed = server.url("v.nc?token=abc").replace("http://", "https://alice:pa55word@")
    finally:
        server.close()
    with pytest.raises(DataError, match="cannot connect") as err:
        dl.fetch(closed, tmp_path / "v.nc")
    assert not any(secret in str(err.value) for secret in ("pa55word", "alice", "abc"))


def test_other_schemes_are_refused_up_front(tmp_path, data_home):
    hint = r"addresses are not supported; use https:// \(or http:// for a mirror or a local server"
    with pytest.raises(DataError, match=f"cannot download ftp://\\*\\*\\*@host.org/v.nc: ftp:// {hint}") as err:
        dl.fetch("ftp://anonymous:pa55word@host.org/v.nc", tmp_path / "v.nc")
    assert "pa55word" not in str(err.value)
    with pytest.raises(DataError, match=f"--url file:///etc/v.nc: file:// {hint}"):
        dl.download("measures-insar", tmp_path, url="file:///etc/v.nc")
    with pytest.raises(DataError, match="not an address \\(no scheme://\\)"):
        dl.fetch("n5eil01u.ecs.nsidc.org/v.nc", tmp_path / "v.nc")
    with pytest.raises(DataError, match="https://host.org:port/v.nc: not a valid address"):
        dl.fetch("https://host.org:port/v.nc", tmp_path / "v.nc")
    assert not list(tmp_path.glob("v.nc*"))


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
