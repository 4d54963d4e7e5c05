"""Weights of a checkpoint from its safetensors headers, without loading a tensor.

A .safetensors file starts with a little-endian u64 header length and a JSON header giving every tensor's
dtype and shape, so the bytes vLLM will hold after load are a sum over headers. The MTP head is skipped:
vLLM does not load it unless speculative decoding is on (vllm/model_executor/models/qwen3_5.py:
skip_prefixes=["mtp."]). Without weight files, `model.safetensors.index.json`'s metadata.total_size (the
hub's own sum) gives the total.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

from servectl.checkpoint.source import CheckpointSource, header_length
from servectl.errors import UserError
from servectl.fsutil import loads_strict, open_regular

DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F4": 0.5,
    "F6_E2M3": 0.75,
    "F6_E3M2": 0.75,
}
SKIPPED_PREFIXES = ("mtp.", "model.mtp.")
INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class Weights:
    """What the safetensors headers say about a checkpoint's weights."""

    loaded_bytes: int  # bytes vLLM loads (every tensor but the MTP head)
    skipped_bytes: int  # the MTP head's bytes (loaded only when speculating)
    files: int
    dtypes: dict[str, int] = field(default_factory=dict)  # safetensors dtype -> bytes
    source: str = "the safetensors headers"
    tensors: int = 0

    @property
    def main_dtype(self) -> str | None:
        """The dtype holding most bytes (vLLM falls back to the weights' dtype when config.json names none)."""
        return max(self.dtypes, key=lambda d: self.dtypes[d]) if self.dtypes else None


def parse_header(raw: bytes, where: str) -> dict:
    try:
        header = loads_strict(raw)  # no NaN / Infinity, as a safetensors writer never writes them
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{where} has a safetensors header that is not JSON", "is the file complete?") from None
    if not isinstance(header, dict):
        raise UserError(f"{where} has a safetensors header that is not a JSON object")
    return header


def tensor_bytes(info: dict, where: str) -> float:
    shape = info.get("shape") if isinstance(info, dict) else None
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise UserError(f"{where} lists a tensor without a valid dtype and shape", "is the file complete?")
    return prod(shape) * DTYPE_BYTES.get(str(info.get("dtype")), 1)


def file_header(path: Path, where: str | None = None) -> dict[str, Any]:
    """The parsed header of one .safetensors file on disk (a regular file only; the header's length checked)."""
    where = where or str(path)
    with open_regular(path, where) as fh:  # never a FIFO or a device under a weight file's name
        length = header_length(fh.read(8), where)
        raw = fh.read(length)
    if len(raw) != length:
        raise UserError(f"{where} ends inside its safetensors header", "is the file complete?")
    return parse_header(raw, where)


def sum_headers(headers: Mapping[str, Mapping[str, Any]], name: str) -> Weights:
    """What vLLM loads, over the parsed headers of a checkpoint's files ({file: header}); `name` names it in
    errors. A tensor without a valid dtype and shape is refused, as vLLM could not load it either."""
    loaded = skipped = 0.0
    count = 0
    dtypes: Counter[str] = Counter()
    for f, header in headers.items():
        where = f"{name}/{f}"
        for tensor, info in header.items():
            if tensor == "__metadata__":
                continue
            if not isinstance(info, dict):
                raise UserError(f"{where} lists tensor {tensor!r} without dtype and shape")
            size = tensor_bytes(info, where)
            count += 1
            if tensor.startswith(SKIPPED_PREFIXES):
                skipped += size
            else:
                loaded += size
                dtypes[str(info.get("dtype"))] += int(size)
    return Weights(int(loaded), int(skipped), len(headers), dict(dtypes), tensors=count)


def weights(source: CheckpointSource) -> Weights:
    """Sum over every *.safetensors header of the checkpoint (UserError when it has none)."""
    files = [f for f in source.list_files() if f.endswith(".safetensors")]
    if not files:
        raise UserError(f"no *.safetensors files in {source.name}", "point at a checkpoint directory")
    return sum_headers({f: parse_header(source.read_safetensors_header(f), f"{source.name}/{f}") for f in files}, source.name)


def index_total(source: CheckpointSource) -> int | None:
    """metadata.total_size of model.safetensors.index.json, when the checkpoint ships one."""
    raw = source.read_small(INDEX)
    if raw is None:
        return None
    try:
        total = loads_strict(raw).get("metadata", {}).get("total_size")
    except (ValueError, AttributeError):
        return None
    return int(total) if isinstance(total, (int, float)) and 0 < total < float("inf") else None
