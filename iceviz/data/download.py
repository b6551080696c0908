"""Getting the products: resumable, checked downloads (``iceviz data download PRODUCT``).

NSIDC products need a NASA Earthdata login. Credentials are read, in this
order, from ``EARTHDATA_TOKEN`` (a bearer token), ``EARTHDATA_USERNAME`` /
``EARTHDATA_PASSWORD``, or the ``machine urs.earthdata.nasa.gov`` entry of
``~/.netrc``; they are sent only to the data host and the login host, and
never stored or printed.

A download goes to ``NAME.part`` and resumes from its size with an HTTP Range
request; when complete its size is checked against the server's, its SHA-256
against the one given (or recorded beside the file as ``NAME.sha256`` for later
checks), and its content against the product (an HTML login page saved as
``.nc`` is refused), and only then is it renamed into place.
"""

from __future__ import annotations

import hashlib
import netrc
import os
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from iceviz.cache import user_dir
from iceviz.data.problem import DataError
from iceviz.data.products import PRODUCTS, identify, interchangeable

LOGIN_HOST = "urs.earthdata.nasa.gov"
CHUNK = 1 << 20
NET_CHUNK = 1 << 16  # small network reads: an interrupted transfer keeps all but the last one
TIMEOUT = 30.0


def data_home() -> Path:
    """Where downloads go by default: $ICEVIZ_DOWNLOADS, else $XDG_DATA_HOME/iceviz, else ~/.local/share/iceviz."""
    return user_dir("ICEVIZ_DOWNLOADS", "XDG_DATA_HOME", ".local/share")


def credentials() -> tuple[str, str] | str | None:
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


def _session(url: str, auth: tuple[str, str] | str | None):
    import requests

    data_host = urlparse(url).hostname

    class Session(requests.Session):
        def rebuild_auth(self, prepared, response):  # keep credentials only for the data and login hosts
            host = urlparse(prepared.url).hostname
            if "Authorization" in prepared.headers and host not in (data_host, LOGIN_HOST):
                del prepared.headers["Authorization"]

    s = Session()
    s.trust_env = False  # no implicit ~/.netrc lookups for other hosts
    if isinstance(auth, str):
        s.headers["Authorization"] = f"Bearer {auth}"
    elif auth is not None:
        s.auth = auth
    return s


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, target: Path, auth: tuple[str, str] | str | None = None, expected_sha256: str | None = None,
          product: str | None = None, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``target`` (resuming ``target.part``), check it, and return ``target``.

    ``progress(done_bytes, total_bytes)`` is called as data arrives. DataError names the host and the
    reason for: no network, refused login, a missing file, a short transfer, a checksum mismatch, or content
    that is not the product.
    """
    import requests

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    host = urlparse(url).hostname or url
    done = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    try:
        with _session(url, auth) as s, s.get(url, headers=headers, stream=True, timeout=TIMEOUT) as r:
            if r.status_code in (401, 403):
                hint = ("set EARTHDATA_USERNAME / EARTHDATA_PASSWORD, EARTHDATA_TOKEN, or a 'machine "
                        f"{LOGIN_HOST}' line in ~/.netrc") if auth is None else "check the Earthdata login"
                raise DataError(f"{host}: login refused (HTTP {r.status_code}) for {url}; {hint}")
            if r.status_code == 416 and done:  # the part file is already whole
                total = done
            elif r.status_code not in (200, 206):
                raise DataError(f"{host}: HTTP {r.status_code} {r.reason} for {url}")
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
    info = PRODUCTS[product]
    urls = [url] if url else list(info.urls)
    if not urls:
        raise DataError(f"{product}: {info.name} is distributed per campaign by the {info.dataset}; "
                        "give each file's address with --url")
    dest = Path(dest) if dest else data_home() / product
    auth = credentials() if info.earthdata else None
    out = []
    for u in urls:
        target = dest / Path(urlparse(u).path).name
        if verify(target):
            out.append(target)
            continue
        out.append(fetch(u, target, auth, expected_sha256, product, progress))
    return out
