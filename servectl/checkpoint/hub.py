"""A Hugging Face hub repo as a checkpoint `Source`, through huggingface_hub: small files with `hf_hub_download`
(into the HF cache, where vLLM finds them again), safetensors headers with ranged reads
(`HfApi.parse_safetensors_file_metadata`: the first 100 kB of each weight file, never the weights).

The environment is honoured as huggingface_hub and vLLM read it: the HF cache (HF_HOME / HF_HUB_CACHE),
HF_HUB_OFFLINE (only the cache is read), HF_ENDPOINT (another hub or a mirror), and the token in HF_TOKEN (read
by huggingface_hub itself: servectl never handles, prints or passes the value). Headers read once are kept per
commit in servectl's cache, so a plan works offline after one online look (commits never change).

Every call has a total deadline ($SERVECTL_HUB_TIMEOUT seconds, default 120), and every failure is one line that
says what to do: a gated repo, a missing repo or revision, no network, nothing in the cache.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from servectl.checkpoint.ref import ModelRef
from servectl.checkpoint.safetensors import file_header
from servectl.errors import CheckFailed, UserError
from servectl.fsutil import read_json_capped, write_atomic
from servectl.paths import cache_dir

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 120.0
# servectl's own cache of a repo's safetensors headers (~100 B per tensor: a few MiB for the largest repos)
HEADER_CACHE_LIMIT = 256 << 20
_TRUE = ("1", "ON", "YES", "TRUE")


def offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (read at call time: tests and callers may set it late)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def timeout_s() -> float:
    try:
        return max(1.0, float(os.environ.get("SERVECTL_HUB_TIMEOUT", DEFAULT_TIMEOUT_S)))
    except ValueError:
        raise UserError(
            f"SERVECTL_HUB_TIMEOUT={os.environ['SERVECTL_HUB_TIMEOUT']!r} is not a number of seconds",
            "e.g. SERVECTL_HUB_TIMEOUT=60",
        ) from None


class Deadline:
    """One total time budget for a series of hub calls; each call runs in a worker thread that is abandoned
    (it is a daemon and holds no lock of ours) when the budget runs out."""

    def __init__(self, seconds: float, what: str):
        self.seconds, self.what = seconds, what
        self.end = time.monotonic() + seconds

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        left = self.end - time.monotonic()
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        if left > 0:
            worker = threading.Thread(target=work, daemon=True, name="servectl-hub")
            worker.start()
            worker.join(left)
        if "value" not in box and "error" not in box:
            raise CheckFailed(
                f"the Hub did not answer within {self.seconds:.0f} s ({self.what}, {endpoint()})",
                "check the network or HF_ENDPOINT; SERVECTL_HUB_TIMEOUT sets the limit",
            )
        if "error" in box:
            raise box["error"]
        return box["value"]


def explain(exc: BaseException, ref: ModelRef, what: str) -> Exception:
    """A huggingface_hub failure as one line saying what to do (never the token, never a traceback)."""
    from huggingface_hub import errors

    label = ref.label
    token_set = bool(os.environ.get("HF_TOKEN"))
    if isinstance(exc, errors.GatedRepoError):
        if token_set:
            return UserError(
                f"{label} is gated and the token in HF_TOKEN has no access to it",
                f"accept its conditions at {endpoint()}/{ref.repo} with the account of that token",
            )
        return UserError(
            f"{label} is gated: it needs an accepted licence and a token",
            f"accept its conditions at {endpoint()}/{ref.repo}, then export HF_TOKEN (servectl passes it by name)",
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return UserError(f"{ref.repo} has no revision {ref.revision!r}", "give a branch, tag or commit the repo has")
    if isinstance(exc, errors.RepositoryNotFoundError):
        hint = (
            "check the name; the token in HF_TOKEN cannot see a repo of that name"
            if token_set
            else "check the name (org/name); a private repo needs a token: export HF_TOKEN"
        )
        return UserError(f"no model repo {ref.repo} on {endpoint()}", hint)
    if isinstance(exc, errors.LocalEntryNotFoundError):
        if offline():
            return UserError(
                f"{label}: {what} is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
                f"run `servectl pull {label}` where the Hub is reachable, or unset HF_HUB_OFFLINE",
            )
        return CheckFailed(
            f"cannot reach {endpoint()} and {label}'s {what} is not in the Hugging Face cache",
            "check the network (or HF_ENDPOINT), or copy the checkpoint here and give its directory",
        )
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return UserError(
            f"{label}: {what} is not cached and HF_HUB_OFFLINE is set",
            f"run `servectl pull {label}` where the Hub is reachable, or unset HF_HUB_OFFLINE",
        )
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return CheckFailed(f"{endpoint()} answered HTTP {status} for {label}'s {what}", "try again later, or check HF_ENDPOINT")
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
        return CheckFailed(
            f"cannot reach {endpoint()} for {label}'s {what} ({type(exc).__name__})",
            "check the network (or HF_ENDPOINT), or give a local checkpoint directory",
        )
    return CheckFailed(f"reading {label}'s {what} from the Hub failed: {type(exc).__name__}", "SERVECTL_DEBUG=1 shows where")


def quiet_library() -> None:
    """huggingface_hub logs each retry and fallback as a warning; servectl reports the outcome as one line."""
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


class HubSource:
    """A hub repo, read through huggingface_hub (see the module docstring)."""

    def __init__(self, ref: ModelRef, *, deadline: Deadline | None = None):
        if ref.repo is None:
            raise ValueError("a HubSource needs a repo ref")
        quiet_library()
        self.ref = ref
        self.name = ref.repo
        self.label = ref.label
        self.commit: str | None = None  # the commit the files were read at, once one was
        self.snapshot: Path | None = None  # its snapshot folder in the HF cache
        self.notes: list[str] = []  # optional files that could not be looked up (offline, not cached)
        self.deadline = deadline or Deadline(timeout_s(), f"reading {ref.label}")

    # ------------------------------------------------------------------ files

    def _download(self, filename: str) -> Path:
        from huggingface_hub import hf_hub_download

        rev = self.commit or self.ref.revision
        path = Path(
            self.deadline.run(
                hf_hub_download,
                self.ref.repo,
                filename,
                revision=rev,
                local_files_only=offline(),
                etag_timeout=min(10.0, self.deadline.seconds),
            )
        )
        # .../models--org--name/snapshots/<commit>/<filename>: later files come from the same commit
        snap = path
        for _ in filename.split("/"):
            snap = snap.parent
        self.snapshot, self.commit = snap, snap.name
        return path

    def read_bytes(self, filename: str, limit: int) -> bytes | None:
        from huggingface_hub import errors

        try:
            path = self._download(filename)
        except errors.LocalEntryNotFoundError as exc:  # (a subclass of EntryNotFoundError: first)
            if filename == "config.json" or self.commit is None:
                raise explain(exc, self.ref, filename) from None
            self.notes.append(
                f"{filename} is not in the Hugging Face cache ({'HF_HUB_OFFLINE' if offline() else 'Hub unreachable'}): "
                "read as absent"
            )
            return None
        except errors.EntryNotFoundError:
            return None
        except (errors.GatedRepoError, errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:
            raise explain(exc, self.ref, filename) from None
        except (CheckFailed, UserError):
            raise
        except Exception as exc:
            raise explain(exc, self.ref, filename) from None
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise UserError(
                f"{self.label}: {filename} is larger than {limit >> 20} MiB", "that is not the small file it should be"
            )
        return data

    # ------------------------------------------------------------------ safetensors headers

    def _cache_file(self) -> Path:
        assert self.commit is not None
        folder = self.ref.repo.replace("/", "--")  # type: ignore[union-attr]
        return cache_dir() / "hub-headers" / folder / f"{self.commit}.json"

    def _weight_names(self) -> list[str] | None:
        """The repo's safetensors files from its index (None: no index, a single file)."""
        from servectl.checkpoint.files import read_json

        index = read_json(self, "model.safetensors.index.json")
        if index is None:
            return None
        files = sorted({str(f) for f in (index.get("weight_map") or {}).values() if isinstance(f, str)})
        if not files or any("/" in f or f.startswith(".") for f in files):
            raise UserError(f"{self.label}: model.safetensors.index.json has no usable weight_map", "is the repo complete?")
        return files

    def _remote_header(self, filename: str) -> dict[str, Any]:
        from huggingface_hub import HfApi

        meta = self.deadline.run(
            HfApi().parse_safetensors_file_metadata,
            self.ref.repo,
            filename,
            revision=self.commit,
            timeout=min(30.0, self.deadline.seconds),
        )
        header: dict[str, Any] = {"__metadata__": dict(meta.metadata or {})}
        for tensor, info in meta.tensors.items():
            header[tensor] = {"dtype": info.dtype, "shape": list(info.shape), "data_offsets": list(info.data_offsets)}
        return header

    def safetensors_headers(self) -> dict[str, dict[str, Any]]:
        from huggingface_hub import errors

        if self.commit is None:
            self.read_bytes("config.json", 1 << 20)
        cached = self._cache_file()
        data = self._cached_headers(cached)
        if data:
            return data
        names = self._weight_names() or ["model.safetensors"]
        local = {n: self.snapshot / n for n in names} if self.snapshot else {}
        if local and all(p.is_file() for p in local.values()):  # pulled: read the files themselves
            return {n: file_header(p) for n, p in local.items()}
        if offline():
            raise UserError(
                f"{self.label}: the safetensors headers are not in servectl's cache and HF_HUB_OFFLINE is set",
                f"run `servectl models show {self.label}` once where the Hub is reachable, or `servectl pull {self.label}`",
            )
        headers: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                headers[name] = self._remote_header(name)
            except errors.EntryNotFoundError:
                if name == "model.safetensors" and len(names) == 1:
                    try:  # Mistral's own layout
                        headers = {"consolidated.safetensors": self._remote_header("consolidated.safetensors")}
                        break
                    except errors.EntryNotFoundError:
                        pass
                raise UserError(
                    f"{self.label} has no safetensors weights ({name} is missing)",
                    "vLLM loads safetensors: give a checkpoint that has them",
                ) from None
            except (CheckFailed, UserError):
                raise
            except Exception as exc:
                raise explain(exc, self.ref, f"{name} header") from None
        write_atomic(cached, json.dumps(headers) + "\n")
        return headers

    @staticmethod
    def _cached_headers(cached: Path) -> dict[str, Any] | None:
        """The headers cache of a commit, None when absent or unreadable (then rebuilt), read with a size limit."""
        if not cached.is_file():
            return None
        try:
            data = read_json_capped(cached, HEADER_CACHE_LIMIT, nofollow=True)
        except UserError:
            return None
        return data if isinstance(data, dict) and data else None

    def weight_files(self) -> dict[str, int]:
        """Sizes from the headers: 8 + header + the last tensor's end offset (the header's length re-serialised: within a few kB)."""
        out = {}
        for name, header in self.safetensors_headers().items():
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
            out[name] = 8 + len(json.dumps(header)) + max(ends, default=0)
        return out

    # ------------------------------------------------------------------ the checkpoint-source calls of the layout planner
    # (list the files, read a small one, read one safetensors header), so a hub repo plans like a directory

    def list_files(self) -> list[str]:
        """The repo's files: one tree listing online; offline, the cached snapshot's files and the headers cache's."""
        from huggingface_hub import HfApi

        if self.commit is None:
            self.read_bytes("config.json", 1 << 20)
        if offline():
            names = (
                {str(p.relative_to(self.snapshot)) for p in self.snapshot.rglob("*") if p.is_file()} if self.snapshot else set()
            )
            names |= set(self._cached_headers(self._cache_file()) or {})
            return sorted(names)
        try:
            entries = self.deadline.run(lambda: list(HfApi().list_repo_tree(self.name, revision=self.commit, recursive=True)))
        except (CheckFailed, UserError):
            raise
        except Exception as exc:
            raise explain(exc, self.ref, "file list") from None
        return sorted(e.path for e in entries if getattr(e, "size", None) is not None)

    def read_small(self, path: str, limit: int = 4 << 20) -> bytes | None:
        return self.read_bytes(path, limit)

    def read_safetensors_header(self, path: str) -> bytes:
        header = self.safetensors_headers().get(path)
        if header is None:
            raise UserError(f"{self.label} has no safetensors file {path}", "is the repo complete?")
        return json.dumps(header).encode()
