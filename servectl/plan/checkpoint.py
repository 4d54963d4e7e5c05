"""Weights of a checkpoint from its safetensors headers, without loading a tensor.

A .safetensors file starts with a little-endian u64 header length and a JSON header giving every
tensor's dtype and shape, so the bytes vLLM will hold after load are a sum over headers.
The MTP head is skipped: vLLM does not load it unless speculative decoding is on
(vllm/model_executor/models/qwen3_5.py: skip_prefixes=["mtp."]).
"""

from __future__ import annotations

import os
import struct
from math import prod
from pathlib import Path

from servectl.errors import UserError
from servectl.fsutil import loads_strict

DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1,
}
SKIPPED_PREFIXES = ("mtp.", "model.mtp.")


def header(path: Path) -> dict:
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO named *.safetensors must not block the plan
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{path} is not a regular file", "point --model-path at a checkpoint directory")
        raw = fh.read(8)
        if len(raw) != 8:
            raise UserError(f"{path} is not a safetensors file (too short)", "point --model-path at a checkpoint directory")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 2**20:
            raise UserError(f"{path} has an implausible safetensors header ({length} bytes)", "is the file complete?")
        try:
            data = loads_strict(fh.read(length))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{path} has no readable safetensors header", "is the file complete?") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} has no readable safetensors header", "is the file complete?")
        return data


def weight_bytes(directory: Path) -> tuple[int, int]:
    """(bytes vLLM loads, bytes skipped) over every *.safetensors file of a checkpoint directory."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise UserError(f"no *.safetensors files in {directory}", "point --model-path at a checkpoint directory")
    loaded = skipped = 0
    for f in files:
        for name, info in header(f).items():
            if name == "__metadata__":
                continue
            shape = info.get("shape") if isinstance(info, dict) else None
            if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
                raise UserError(f"{f}: tensor {name!r} has no valid shape in its safetensors header", "is the file complete?")
            size = prod(shape) * DTYPE_BYTES.get(str(info.get("dtype")), 1)
            if name.startswith(SKIPPED_PREFIXES):
                skipped += size
            else:
                loaded += size
    return loaded, skipped


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
