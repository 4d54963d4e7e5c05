"""Single files of released vLLM wheels, read from the package registry without downloading the wheel.

A wheel is a zip archive: its central directory sits at the end, and each member is stored (deflated)
at an offset that directory gives. Python's zipfile reads members from any seekable file, so a file
object that answers reads with HTTP range requests lets zipfile fetch only the central directory
(~0.5 MB of a 230-430 MB wheel) and the members asked for. The wheel's address comes from the
registry's JSON API (first x86_64 manylinux wheel of the release). Members are cached on disk per
release, so a warm run reads nothing from the network.

Used by the known-bug catalog's tests (tests/test_known_bugs_wheels.py) and by
scripts/known-bugs-evidence to print what each release carries.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import httpx

from servectl.paths import cache_dir

INDEX = "https://pypi.org/pypi/{name}/json"  # every release's files (the per-release endpoint is not always served)
_TIMEOUT = httpx.Timeout(60.0, connect=20.0)
_BLOCK = 1 << 16  # read-ahead: zipfile reads headers in small pieces


class Unreachable(Exception):
    """The registry could not be reached (tests skip with the reason)."""


class RangeFile(io.RawIOBase):
    """A read-only seekable file over HTTP range requests, with a small read-ahead buffer."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self._client, self._url, self._pos = client, url, 0
        head = client.head(url, follow_redirects=True)
        head.raise_for_status()
        self._url = str(head.url)
        self.size = int(head.headers["content-length"])
        self._buf_start, self._buf = 0, b""
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = {0: offset, 1: self._pos + offset, 2: self.size + offset}[whence]
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self._pos
        n = min(n, self.size - self._pos)
        if n <= 0:
            return b""
        lo = self._pos - self._buf_start
        if not (0 <= lo and lo + n <= len(self._buf)):
            want = max(n, _BLOCK)
            end = min(self.size, self._pos + want) - 1
            resp = self._client.get(self._url, headers={"Range": f"bytes={self._pos}-{end}"})
            resp.raise_for_status()
            if resp.status_code != 206:
                raise Unreachable(f"{self._url} does not answer range requests")
            self.requests += 1
            self._buf_start, self._buf, lo = self._pos, resp.content, 0
        out = self._buf[lo : lo + n]
        self._pos += len(out)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


_INDEXES: dict[str, tuple[str, dict]] = {}


def _index(client: httpx.Client, name: str) -> tuple[str, dict]:
    """(the index's own address, its releases), read once per process."""
    if name not in _INDEXES:
        resp = client.get(INDEX.format(name=name))
        resp.raise_for_status()
        _INDEXES[name] = (str(resp.url), resp.json()["releases"])
    return _INDEXES[name]


def wheel_url(client: httpx.Client, version: str, name: str = "vllm") -> str:
    base, releases = _index(client, name)
    wheels = [
        u
        for u in releases.get(version) or []
        if u["filename"].endswith(".whl") and "x86_64" in u["filename"] and not u.get("yanked")
    ]
    if not wheels:
        raise Unreachable(f"{name} {version} has no x86_64 wheel on the registry")
    # the plain build first (0.20.1-1 and the like are re-uploads with a build tag)
    wheels.sort(key=lambda u: (u["filename"].count("-"), u["filename"]))
    return str(httpx.URL(base).join(wheels[0]["url"]))  # absolute, or relative to the index (mirrors)


def releases(name: str = "vllm") -> list[str]:
    """Every final release with an x86_64 wheel, oldest first."""
    from packaging.version import Version

    try:
        with httpx.Client(timeout=_TIMEOUT, follow_redirects=True) as client:
            _, rel = _index(client, name)
    except httpx.HTTPError as exc:
        raise Unreachable(f"cannot read the {name} index from the package registry: {exc}") from None
    out = [
        v
        for v, files in rel.items()
        if not Version(v).is_prerelease
        and any(f["filename"].endswith(".whl") and "x86_64" in f["filename"] and not f.get("yanked") for f in files)
    ]
    return sorted(out, key=Version)


def _cache(version: str, name: str) -> Path:
    base = Path(os.environ.get("SERVECTL_WHEEL_MEMBERS") or cache_dir() / "wheel-members")
    return base / f"{name}-{version}"


def members(version: str, paths: list[str], name: str = "vllm") -> dict[str, str | None]:
    """Text of each member path (e.g. "vllm/reasoning/qwen3_reasoning_parser.py") of the release's wheel;
    None where the wheel has no such file. Cached per release: a member read once is never read again."""
    cache = _cache(version, name)
    out: dict[str, str | None] = {}
    todo = []
    for p in paths:
        hit = cache / p
        if (cache / (p + ".absent")).exists():
            out[p] = None
        elif hit.is_file():
            out[p] = hit.read_bytes().decode("utf-8")
        else:
            todo.append(p)
    if not todo:
        return out
    names_file = cache / ".names.json"
    try:
        with httpx.Client(timeout=_TIMEOUT, follow_redirects=True) as client:
            raw = RangeFile(client, wheel_url(client, version, name))
            with zipfile.ZipFile(io.BufferedReader(raw, buffer_size=_BLOCK)) as zf:
                names = set(zf.namelist())
                cache.mkdir(parents=True, exist_ok=True)
                if not names_file.exists():
                    names_file.write_text(json.dumps(sorted(names)))
                for p in todo:
                    if p in names:
                        data = zf.read(p)
                        _write(cache / p, data)
                        out[p] = data.decode("utf-8")
                    else:
                        _write(cache / (p + ".absent"), b"")
                        out[p] = None
    except (httpx.HTTPError, OSError, KeyError) as exc:
        raise Unreachable(f"cannot read {name} {version} from the package registry: {exc}") from None
    return out


def namelist(version: str, name: str = "vllm") -> list[str]:
    """Every member name of the release's wheel (cached)."""
    names_file = _cache(version, name) / ".names.json"
    if not names_file.exists():  # opening the wheel writes it: ask for a member no wheel has
        members(version, [f"{name}/.servectl-namelist-probe"], name)
    return json.loads(names_file.read_text())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
