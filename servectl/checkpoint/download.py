"""`servectl pull REPO` (and `up REPO` before it starts vLLM): the files vLLM loads, downloaded into the HF cache
with huggingface_hub's snapshot_download (its progress bars, resume of partial files, its cache layout, so
vLLM finds them there), after a disk-space pre-flight.

Which files: the repo's file list (one tree listing), less what vLLM does not load from a safetensors
checkpoint: PyTorch/TF/Flax/ONNX/GGUF weights, `original/` (Meta's consolidated.*.pth copies), and safetensors
files the index does not name (Mistral repos ship consolidated.safetensors next to the sharded model-*.safetensors;
vLLM keeps only the index's files, model_loader/weight_utils.py filter_duplicate_safetensors_files). Everything
else (configs, tokenizer, chat template, custom code) is kept: vLLM reads them at start-up.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from servectl.checkpoint.hub import Deadline, HubSource, explain, offline, timeout_s
from servectl.checkpoint.ref import ModelRef
from servectl.errors import CheckFailed, UserError

SKIP_SUFFIXES = (
    ".bin",
    ".pth",
    ".pt",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".onnx",
    ".onnx_data",
    ".gguf",
    ".tflite",
    ".mlmodel",
    ".ot",
    ".pb",
    ".nemo",
)
SKIP_FOLDERS = ("original", "onnx", "openvino", "coreml", "gguf", "tf", "flax", "mlx")
MARGIN = 1 << 30  # left free after the download


@dataclass(frozen=True)
class DownloadPlan:
    repo: str
    commit: str | None
    files: dict[str, int]  # what is downloaded: path -> bytes
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why
    cached_bytes: int = 0  # of `files`, already in the cache

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    @property
    def to_fetch_bytes(self) -> int:
        return self.total_bytes - self.cached_bytes


def choose_files(tree: dict[str, int], index_files: list[str] | None) -> tuple[dict[str, int], dict[str, str]]:
    """(files vLLM needs, files skipped with why) from the repo's file list. Pure."""
    keep: dict[str, int] = {}
    skipped: dict[str, str] = {}
    has_safetensors = any(p.endswith(".safetensors") for p in tree)
    for path, size in sorted(tree.items()):
        parts = PurePosixPath(path).parts
        if parts[0] in SKIP_FOLDERS and len(parts) > 1:
            skipped[path] = f"{parts[0]}/ holds copies vLLM does not load"
        elif path.endswith(SKIP_SUFFIXES) and has_safetensors:
            skipped[path] = "not safetensors: vLLM loads the safetensors weights"
        elif path.endswith(".safetensors") and index_files is not None and path not in index_files:
            skipped[path] = "not in model.safetensors.index.json: vLLM drops it as a duplicate"
        elif parts[0].startswith("."):
            skipped[path] = "repository metadata"
        else:
            keep[path] = size
    return keep, skipped


def hub_cache(cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _cached(cache: Path, repo: str, commit: str | None, path: str) -> bool:
    if commit is None:
        return False
    f = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / commit / path
    return f.exists()


def plan(ref: ModelRef, *, cache_dir: Path | None = None) -> DownloadPlan:
    """The files to download and their sizes (one tree listing; the index from the cache or the Hub)."""
    from huggingface_hub import HfApi

    source = HubSource(ref)
    repo = source.name
    source.read_bytes("config.json", 1 << 20)  # resolves the revision to its commit (and fails early, one line)
    cache = hub_cache(cache_dir)
    if offline():
        raise UserError(
            f"HF_HUB_OFFLINE is set: {ref.label} cannot be downloaded", "unset HF_HUB_OFFLINE where the Hub is reachable"
        )
    try:
        entries = source.deadline.run(lambda: list(HfApi().list_repo_tree(repo, revision=source.commit, recursive=True)))
    except (CheckFailed, UserError):
        raise
    except Exception as exc:
        raise explain(exc, ref, "file list") from None
    tree = {e.path: int(getattr(e, "size", 0) or 0) for e in entries if getattr(e, "size", None) is not None}
    index_files = source._weight_names() if "model.safetensors.index.json" in tree else None
    files, skipped = choose_files(tree, index_files)
    if not any(p.endswith(".safetensors") for p in files):
        raise UserError(f"{ref.label} has no safetensors weights", "vLLM loads safetensors: give a checkpoint that has them")
    cached = sum(size for p, size in files.items() if _cached(cache, ref.repo or "", source.commit, p))
    return DownloadPlan(ref.repo or "", source.commit, files, skipped, cached)


def preflight(p: DownloadPlan, cache_dir: Path | None = None) -> tuple[int, Path]:
    """(bytes free, where) after checking the download fits with 1 GiB to spare; CheckFailed when it does not."""
    where = hub_cache(cache_dir)
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if p.to_fetch_bytes + MARGIN > free:
        raise CheckFailed(
            f"{p.repo} needs {p.to_fetch_bytes / 1e9:.1f} GB more in {where} and {free / 1e9:.1f} GB are free",
            "free space there or point HF_HUB_CACHE at a larger disk",
        )
    return free, where


def download(p: DownloadPlan, *, cache_dir: Path | None = None, quiet: bool = False) -> Path:
    """Download the plan's files (huggingface_hub resumes partial ones); the snapshot folder vLLM reads."""
    from huggingface_hub import snapshot_download

    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    # the weights may take hours: the deadline covers each stall, not the whole transfer (huggingface_hub retries)
    try:
        path = snapshot_download(
            p.repo,
            revision=p.commit,
            allow_patterns=sorted(p.files),
            etag_timeout=min(30.0, timeout_s()),
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
    except (CheckFailed, UserError):
        raise
    except Exception as exc:
        raise explain(exc, ModelRef("repo", p.repo, repo=p.repo, revision=p.commit), "weights") from None
    return Path(path)


def ensure(
    ref: ModelRef, *, cache_dir: Path | None = None, quiet: bool = False, on_plan=None
) -> tuple[Path, DownloadPlan | None]:
    """Pull unless every file vLLM needs is already cached (offline: only the cache is looked at)."""
    if offline():
        source = HubSource(ref, deadline=Deadline(timeout_s(), f"reading {ref.label}"))
        source.read_bytes("config.json", 1 << 20)
        snap = source.snapshot
        names = source._weight_names() or ["model.safetensors"]
        if snap is not None and all((snap / n).is_file() for n in names):
            return snap, None
        raise UserError(
            f"{ref.label}'s weights are not in the Hugging Face cache and HF_HUB_OFFLINE is set",
            f"run `servectl pull {ref.label}` where the Hub is reachable",
        )
    p = plan(ref, cache_dir=cache_dir)
    if on_plan is not None:
        on_plan(p)
    if p.to_fetch_bytes == 0:
        cache = hub_cache(cache_dir)
        return cache / f"models--{p.repo.replace('/', '--')}" / "snapshots" / (p.commit or ""), p
    preflight(p, cache_dir)
    return download(p, cache_dir=cache_dir, quiet=quiet), p
