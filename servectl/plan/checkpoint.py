"""The checkpoint a plan or a launch uses: its weights (servectl.checkpoint reads the headers) and whether it
carries an MTP head; the Hugging Face cache's copy of a hub repo when one is there (never downloads)."""

from __future__ import annotations

from pathlib import Path

from servectl.checkpoint.safetensors import DTYPE_BYTES, SKIPPED_PREFIXES, weights  # noqa: F401  (re-exported)
from servectl.checkpoint.source import LocalDirectory


def weight_bytes(directory: Path) -> tuple[int, int]:
    """(bytes vLLM loads, bytes skipped) over every *.safetensors file of a checkpoint directory."""
    w = weights(LocalDirectory(directory))
    return w.loaded_bytes, w.skipped_bytes


def cached_checkpoint(repo: str) -> Path | None:
    """The local snapshot of a hub repo when the Hugging Face cache already holds it (never downloads)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency; defensive for trimmed installs
        return None
    # The cache layout (models--ORG--NAME) is cheap to look at; the download module is not (a plan
    # would pay ~0.1 s to learn that nothing is cached).
    if not (Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}").is_dir():
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo, local_files_only=True, allow_patterns=["*.safetensors", "*.json"]))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None
    return path if any(path.glob("*.safetensors")) else None


def has_mtp_head(recipe, model_path: str | Path | None = None) -> bool | None:
    """Whether the checkpoint to serve lists mtp.* tensors in its safetensors headers; None when it is not
    on disk (a --model-path, the generated tiny model, or the Hugging Face cache's copy; never downloads)."""
    if model_path:
        directory: Path | None = Path(model_path)
    elif recipe.generated:
        from servectl.vllmenv.tinymodel import model_dir

        directory = model_dir("scripted")
        directory = directory if (directory / "servectl-tiny.json").is_file() else None
    else:
        directory = cached_checkpoint(recipe.repo)
    if directory is None:
        return None
    return weight_bytes(directory)[1] > 0
