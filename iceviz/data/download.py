"""Getting the products: resumable, checked downloads (``iceviz data download PRODUCT``).

NSIDC products need a NASA Earthdata login. Credentials are read, in this
order, from ``EARTHDATA_TOKEN`` (a bearer token), ``EARTHDATA_USERNAME`` /
``EARTHDATA_PASSWORD``, or the ``machine urs.earthdata.nasa.gov`` entry of
``~/.netrc``, and never stored or printed. They are sent only over https://,
and only to the Earthdata hosts (the login host ``urs.earthdata.nasa.gov`` and
the NSIDC hosts the products' addresses name) and to the host names listed,
comma-separated, in ``$ICEVIZ_CREDENTIAL_HOSTS``; each redirect is judged
afresh, so they never follow one to another host. Any other address (an
http:// mirror, a local server) is downloaded without them, and a refused login
there says they were withheld. A user and password written in an https://
address go to that host only; an http:// address may not hold one.

Addresses are https:// (or http:// for a mirror or a local server); other
schemes are refused up front. Every address printed or put in a message goes
through :func:`redact_url`, which hides passwords and secret-looking query
parameters.

A download goes to ``NAME.part`` and resumes from its size with an HTTP Range
request; when complete its size is checked against the server's, its SHA-256
against the one given (or recorded beside the file as ``NAME.sha256`` for later
checks), and its content against the product (an HTML login page saved as
``.nc`` is refused), and only then is it renamed into place.
"""

from __future__ import annotations

import base64
import hashlib
import netrc
import os
import re
from pathlib import Path
from typing import Callable
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from iceviz.cache import user_dir
from iceviz.data.problem import DataError
from iceviz.data.products import PRODUCTS, identify, interchangeable

Auth = tuple[str, str] | str
"""Credentials: a bearer token, or a (user, password) pair."""

LOGIN_HOST = "urs.earthdata.nasa.gov"
EARTHDATA_HOSTS = frozenset({LOGIN_HOST, *(urlsplit(u).hostname for p in PRODUCTS.values() if p.earthdata
                                           for u in p.urls)})
CREDENTIAL_HOSTS_VAR = "ICEVIZ_CREDENTIAL_HOSTS"
WEB_SCHEMES = ("https", "http")
URL_HINT = "use https:// (or http:// for a mirror or a local server, which is sent no credentials)"
SECRET_NAMES = frozenset({"token", "access_token", "key", "apikey", "api_key", "password", "pass", "secret",
                          "signature", "sig", "auth", "credential", "credentials"})
CHUNK = 1 << 20
NET_CHUNK = 1 << 16  # small network reads: an interrupted transfer keeps all but the last one
TIMEOUT = 30.0


def data_home() -> Path:
    """Where downloads go by default: $ICEVIZ_DOWNLOADS, else $XDG_DATA_HOME/iceviz, else ~/.local/share/iceviz."""
    return user_dir("ICEVIZ_DOWNLOADS", "XDG_DATA_HOME", ".local/share")


def credentials() -> Auth | None:
    """A bearer token, a (user, password) pair, or None (see the module doc for the order)."""
    token = os.environ.get("EARTHDATA_TOKEN")
    if token:
        return token
    user, password = os.environ.get("EARTHDATA_USERNAME"), os.environ.get("EARTHDATA_PASSWORD")
    if user and password:
        return user, password
    try:
        found = netrc.netrc().authenticators(LOGIN_HOST)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        found = None
    if found and found[0] and found[2]:
        return found[0], found[2]
    return None


def redact_url(url: str) -> str:
    """``url`` fit to show: a user and password become ``***@``, secret-looking query or fragment parameters
    (token, key, password, signature, X-Amz-Credential, ...) ``name=***``; ``***`` when it cannot be parsed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    host = parts.netloc.rpartition("@")[2]
    netloc = f"***@{host}" if "@" in parts.netloc else host
    return urlunsplit(parts._replace(netloc=netloc, query=_redact_params(parts.query),
                                     fragment=_redact_params(parts.fragment)))


def _redact_params(params: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***``: the values of parameters whose names look secret."""
    def one(item: str) -> str:
        name, eq, _ = item.partition("=")
        plain = unquote_plus(name).lower()
        words = {plain, *re.split(r"[^a-z0-9]+", plain)}
        return f"{name}=***" if eq and words & SECRET_NAMES else item

    return "&".join(one(item) for item in params.split("&"))


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be downloaded (None when it can): a scheme other than https:// or http://, no host,
    a port that is not a number, or a user or password in an http:// address."""
    try:
        parts = urlsplit(url)
        parts.port  # ValueError when the port is not a number
    except ValueError:
        return "not a valid address"
    scheme = parts.scheme.lower()
    if scheme not in WEB_SCHEMES:
        return f"{scheme}:// addresses are not supported" if scheme else "not an address (no scheme://)"
    if not parts.hostname:
        return "no host name"
    if scheme == "http" and "@" in parts.netloc:
        return "a user or password in an http:// address would travel in clear"
    return None


def require_web_url(url: str, what: str, hint: str = URL_HINT) -> None:
    """DataError "``what`` URL: problem; ``hint``" (the URL redacted) when :func:`_url_problem` finds one."""
    problem = _url_problem(url)
    if problem:
        raise DataError(f"{what} {redact_url(url)}: {problem}; {hint}")


def credential_hosts() -> frozenset[str]:
    """The hosts credentials may go to: :data:`EARTHDATA_HOSTS` and those in ``$ICEVIZ_CREDENTIAL_HOSTS``."""
    named = os.environ.get(CREDENTIAL_HOSTS_VAR, "")
    return EARTHDATA_HOSTS | {h.strip().lower() for h in named.split(",") if h.strip()}


def credentials_for(url: str, auth: Auth | None,
                    hosts: frozenset[str] | None = None) -> dict[str, str] | None:
    """The Authorization header ``auth`` gives ``url``; None without ``auth``, or unless ``url`` is https:// to
    one of ``hosts`` (default :func:`credential_hosts`)."""
    parts = urlsplit(url)
    allowed = credential_hosts() if hosts is None else hosts
    if auth is None or parts.scheme.lower() != "https" or parts.hostname not in allowed:
        return None
    if isinstance(auth, str):
        return {"Authorization": f"Bearer {auth}"}
    return {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}


def _withheld_hint(url: str, hosts: frozenset[str]) -> str:
    """Why credentials were not sent to ``url`` and how to allow it."""
    parts = urlsplit(url)
    fixes = []
    if parts.scheme.lower() != "https":
        fixes.append("use an https:// address")
    if parts.hostname not in hosts:
        fixes.append(f"add {parts.hostname} to ${CREDENTIAL_HOSTS_VAR}")
    return (f"credentials were withheld from {parts.hostname}: they go only over https:// to the Earthdata hosts "
            f"and those named in ${CREDENTIAL_HOSTS_VAR} (comma-separated host names); to allow it, "
            f"{' and '.join(fixes)}")


def _session(auth: Auth | None, hosts: frozenset[str]):
    import requests

    class Session(requests.Session):
        def rebuild_auth(self, prepared, response):  # each redirect decides afresh: only where allowed
            prepared.headers.pop("Authorization", None)
            prepared.headers.update(credentials_for(prepared.url, auth, hosts) or {})

    s = Session()
    s.trust_env = False  # no implicit ~/.netrc lookups for other hosts
    return s


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, target: Path, auth: Auth | None = None, expected_sha256: str | None = None,
          product: str | None = None, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``target`` (resuming ``target.part``), check it, and return ``target``.

    ``auth`` goes only where :func:`credentials_for` allows, redirects included. ``progress(done_bytes,
    total_bytes)`` is called as data arrives. DataError names the host and the reason for: an address that is
    not https:// or http://, no network, refused login (or credentials withheld from the host), a missing file,
    a short transfer, a checksum mismatch, or content that is not the product. Addresses in messages are
    redacted (:func:`redact_url`).
    """
    import requests

    require_web_url(url, "cannot download")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    host, shown, hosts = urlsplit(url).hostname, redact_url(url), credential_hosts()
    done = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    headers.update(credentials_for(url, auth, hosts) or {})
    try:
        with _session(auth, hosts) as s, s.get(url, headers=headers, stream=True, timeout=TIMEOUT) as r:
            if r.status_code in (401, 403):
                raise DataError(f"{host}: login refused (HTTP {r.status_code}) for {shown}; "
                                f"{_login_hint(r.url, auth, hosts)}")
            if r.status_code == 416 and done:  # the part file is already whole
                total = done
            elif r.status_code not in (200, 206):
                raise DataError(f"{host}: HTTP {r.status_code} {r.reason} for {shown}")
            else:
                if r.status_code == 200 and done:
                    done = 0  # the server ignored the range: start again
                length = r.headers.get("Content-Length")
                total = done + int(length) if length is not None else None
                with open(part, "ab" if done else "wb") as fh:
                    for block in r.iter_content(NET_CHUNK):
                        fh.write(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
    except requests.exceptions.ConnectionError as exc:
        kept = f"; nothing lost: {part.name} resumes next time" if part.exists() else ""
        raise DataError(f"{host}: cannot connect (no network, or the host is unreachable): "
                        f"{type(exc).__name__}{kept}") from None
    except requests.exceptions.RequestException as exc:
        raise DataError(f"{host}: download interrupted ({type(exc).__name__}); run the command again to resume "
                        f"from {part}") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(f"{host}: transfer ended at {size} of {total} bytes; run the command again to resume")
    digest = sha256(part)
    if expected_sha256 and digest != expected_sha256.lower():
        part.unlink()
        raise DataError(f"{target.name}: SHA-256 {digest} does not match the expected {expected_sha256}; "
                        "the damaged download was removed")
    if product is not None:
        try:
            found = identify(part, suffix=target.suffix)
        except DataError as err:
            part.unlink()
            raise DataError(f"{target.name}: the download is not a {PRODUCTS[product].name} file ({err}); "
                            "an HTML page usually means the login was not accepted; removed") from None
        if not interchangeable(found, product):
            part.unlink()
            raise DataError(f"{target.name}: the download is a {found} file, not {product}; removed")
    os.replace(part, target)
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    return target


def _login_hint(url: str, auth: Auth | None, hosts: frozenset[str]) -> str:
    """What to do when ``url`` refused the login: give credentials, allow its host, or check them."""
    if auth is None:
        return (f"set EARTHDATA_USERNAME / EARTHDATA_PASSWORD, EARTHDATA_TOKEN, or a 'machine {LOGIN_HOST}' line "
                "in ~/.netrc")
    if credentials_for(url, auth, hosts) is None:
        return _withheld_hint(url, hosts)
    return "check the Earthdata login"


def verify(target: Path) -> bool:
    """True when ``target`` matches the SHA-256 recorded beside it (False when none is recorded)."""
    record = target.with_name(target.name + ".sha256")
    if not (target.is_file() and record.is_file()):
        return False
    return record.read_text().split()[0] == sha256(target)


def download(product: str, dest: Path | None = None, url: str | None = None, expected_sha256: str | None = None,
             progress: Callable[[int, int | None], None] | None = None) -> list[Path]:
    """Download ``product``'s files (or ``url``) into ``dest`` (default :func:`data_home`); complete files whose
    recorded checksum still matches are skipped."""
    if product not in PRODUCTS:
        raise DataError(f"unknown product {product!r}; products: {', '.join(PRODUCTS)}")
    if url:
        require_web_url(url, "--url")
    info = PRODUCTS[product]
    urls = [url] if url else list(info.urls)
    if not urls:
        raise DataError(f"{product}: {info.name} is distributed per campaign by the {info.dataset}; "
                        "give each file's address with --url")
    dest = Path(dest) if dest else data_home() / product
    auth = credentials() if info.earthdata else None
    out = []
    for u in urls:
        target = dest / Path(urlsplit(u).path).name
        if verify(target):
            out.append(target)
            continue
        out.append(fetch(u, target, auth, expected_sha256, product, progress))
    return out
