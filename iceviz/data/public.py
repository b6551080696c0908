"""The reference papers' public data, fetched by name (``iceviz data fetch NAME [--from BASE_URL]``).

Each dataset is a few files in a public GitHub repository at a pinned commit,
with their SHA-256 as served (facts in the project's data-sources notes). A
fetch downloads them with pooch into the user cache (:func:`fetched_root`),
where :func:`iceviz.data.locations.data_dirs` looks after ``$ICEVIZ_DATA`` and
``../shared/data``: once fetched, ``byrd-mcor:`` and
``diffice:data_pinns_Amery.mat`` load from any directory.

Files are looked up at ``BASE_URL/OWNER/REPO/COMMIT/PATH``; the default base is
GitHub's raw-content host, and ``--from`` (or ``$ICEVIZ_FETCH_FROM``, which the
app's "Get this dataset" buttons follow too) names a mirror laid out the same way.
A file whose checksum differs is refused and deleted; nothing is sent but the
request (no credentials). A base that is not http:// or https:// (or an http://
one holding a user or password) is refused up front, and addresses are shown
with their secrets hidden (:func:`iceviz.data.download.redact_url`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from iceviz.data.download import redact_url, require_web_url
from iceviz.data.locations import fetched_root
from iceviz.data.problem import DataError

GITHUB_RAW = "https://raw.githubusercontent.com"
MCOR = ("suomynonaanonymous/mass_conservation_on_rails", "cd4dd3c1fb0bea7cff2e428e99687028b671bece")
DIFFICE = ("YaoGroup/DIFFICE_jax", "0af8ea5945f50e5743271e2eabc24638b353e2c7")
TIMEOUT = 60.0


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives (repository, commit, path) and what it must hash to."""

    repo: str
    commit: str
    path: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def url(self, base: str = GITHUB_RAW) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.commit}/{self.path}"


@dataclass(frozen=True)
class PublicDataset:
    """A named dataset: its files, the data folder they go in, and the spec that reads it once fetched."""

    name: str
    folder: str
    files: tuple[RemoteFile, ...]
    spec: str
    description: str

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def target(self, file: RemoteFile) -> Path:
        return fetched_root() / self.folder / file.name


DATASETS: dict[str, PublicDataset] = {d.name: d for d in (
    PublicDataset("byrd-mcor", "byrd_mcor", (
        RemoteFile(*MCOR, "data/train_test_tensors/train_tensor.pt",
                   "93f31cb2f1779f6f517faf80e29969dad9a7cbf67207b0d1638bcde0a2059fa6", 979381),
        RemoteFile(*MCOR, "data/train_test_tensors/test_tensor.pt",
                   "206b2491b0f307d1b27f49cca2d45dd2760f679de9b679ba5c232379cdab96d9", 794800),
        RemoteFile(*MCOR, "data/directional_guidance/velocity_unit_norm.pt",
                   "e3c77cbe3d013cf00bec8fc4dd8931b87d0bba3eabfee26936ed2c68c873c153", 2561235),
    ), "byrd-mcor:", "Byrd Glacier ice flux tensors of 'Mass Conservation on Rails' (train, test, velocity direction)"),
    PublicDataset("diffice-synthetic", "diffice", (
        RemoteFile(*DIFFICE, "tutorial/COMSOL/SynData_exp1.mat",
                   "035a262630561b4e42307c9ae3233a832504d467911755b6005cb8c9099edf8a", 2818770),
    ), "diffice:SynData_exp1.mat", "DIFFICE_jax's synthetic ice shelf with its true viscosity (MIT licence)"),
    PublicDataset("amery", "diffice", (
        RemoteFile(*DIFFICE, "examples/real_data/data_pinns_Amery.mat",
                   "01f549edc3c05e712e7830ea2c822603a157fa28da9e1ba313956810b8ba0c28", 2228601),
    ), "diffice:data_pinns_Amery.mat", "Amery Ice Shelf velocity, thickness and calving front (DIFFICE_jax, MIT)"),
    PublicDataset("larsen-c", "diffice", (
        RemoteFile(*DIFFICE, "examples/real_data/data_pinns_LarsenC.mat",
                   "0cab64ba4496afddb5da78a4200a24bbb4a6d954b87c6ccfcd56e7e5f17cc7b3", 2243390),
    ), "diffice:data_pinns_LarsenC.mat", "Larsen C Ice Shelf velocity, thickness and calving front (DIFFICE_jax, MIT)"),
)}
"""What ``iceviz data fetch`` knows, by name."""

DATASET_FOR_FILE = {f.name: d.name for d in DATASETS.values() for f in d.files}
"""File name -> the dataset that holds it (for "get this dataset" hints)."""


def dataset(name: str) -> PublicDataset:
    """The dataset called ``name``; DataError listing the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def fetch_hint(name: str) -> str:
    """One sentence telling a user how to get the dataset ``name``."""
    d = dataset(name)
    return f"get it with `iceviz data fetch {d.name}` ({d.size / 1e6:.1f} MB from github.com/{d.files[0].repo})"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_fetched(name: str) -> bool:
    """True when every file of the dataset is in the fetch folder (sizes checked, not hashes: cheap)."""
    d = dataset(name)
    return all(d.target(f).is_file() and d.target(f).stat().st_size == f.size for f in d.files)


def fetch(name: str, base_url: str | None = None,
          progress: Callable[[str], None] | None = None) -> list[Path]:
    """Download the dataset ``name`` into :func:`fetched_root` and return its files' paths.

    ``base_url`` defaults to ``$ICEVIZ_FETCH_FROM`` (a site's mirror, for the app too), else GitHub's raw host.
    A file already there with the right SHA-256 is kept. Raises DataError, naming the address and what to
    do, when the server cannot be reached or answers with an error, and naming both checksums when a file
    differs (the download is deleted).
    """
    import pooch
    import requests

    d = dataset(name)
    base_url = base_url or os.environ.get("ICEVIZ_FETCH_FROM") or GITHUB_RAW
    require_web_url(base_url, "--from", "a mirror is an http:// or https:// address laid out as "
                                        "BASE_URL/OWNER/REPO/COMMIT/PATH")
    pooch.get_logger().setLevel("WARNING")
    paths = []
    for f in d.files:
        target = d.target(f)
        if target.is_file() and target.stat().st_size == f.size and sha256_of(target) == f.sha256:
            paths.append(target)
            continue
        url = f.url(base_url)
        shown = redact_url(url)
        if progress:
            progress(f"{f.name}: {f.size / 1e6:.1f} MB from {shown}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            got = pooch.retrieve(url, known_hash=f"sha256:{f.sha256}", fname=f.name, path=target.parent,
                                 downloader=pooch.HTTPDownloader(progressbar=False, timeout=TIMEOUT))
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise DataError(f"{d.name}: {shown} answered HTTP {status}. {_by_hand(d, f)}") from None
        except requests.exceptions.RequestException as exc:
            raise DataError(f"{d.name}: could not download {shown} ({type(exc).__name__}: no connection?). "
                            f"{_by_hand(d, f)}") from None
        except ValueError as exc:
            if "hash" not in str(exc).lower():
                raise
            target.unlink(missing_ok=True)
            raise DataError(f"{d.name}: {f.name} from {shown} does not have the published SHA-256 {f.sha256} "
                            f"({_actual_hash(str(exc), f.sha256)}); it was deleted. Fetch again, or from another "
                            f"mirror with --from BASE_URL.") from None
        except OSError as exc:
            raise DataError(f"{d.name}: cannot write {target} ({exc.strerror or exc}); set ICEVIZ_CACHE to a "
                            f"writable folder") from None
        paths.append(Path(got))
    return paths


def _by_hand(d: PublicDataset, f: RemoteFile) -> str:
    return (f"Download it from {f.url()} and put it at {d.target(f)} (or in $ICEVIZ_DATA/{d.folder}/), "
            f"or fetch from a mirror with --from BASE_URL (laid out as BASE_URL/OWNER/REPO/COMMIT/PATH).")


def _actual_hash(message: str, expected: str) -> str:
    """The downloaded file's hash as pooch's refusal reports it."""
    for word in message.replace("(", " ").replace(")", " ").replace("'", " ").replace(".", " ").split():
        word = word.removeprefix("sha256:").lower()
        if len(word) == 64 and word != expected and all(c in "0123456789abcdef" for c in word):
            return f"got {word}"
    return "another one"
