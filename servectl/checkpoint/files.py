"""The small interface a checkpoint is read through, and its local-directory implementation.

A `Source` gives a few small files by name (config.json, generation_config.json, tokenizer_config.json, the chat
template), the safetensors headers (never a tensor), and the weight files' sizes. Every read has a size limit:
these files come from outside (a download, someone's directory) and a 2 GB "config.json" must not be read.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any, Protocol

from servectl.errors import UserError

# Size limits of what is read. tokenizer_config.json carries the added-token table (a few MB for some
# families); the others are small. A safetensors header lists every tensor: 100 MiB is far above any real one.
SMALL_FILE_LIMIT = 4 << 20
TOKENIZER_CONFIG_LIMIT = 32 << 20
HEADER_LIMIT = 100 << 20
LIMITS = {"tokenizer_config.json": TOKENIZER_CONFIG_LIMIT}

DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1, "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75,
}
# vLLM does not load a multi-token-prediction head unless speculative decoding is on
# (vllm/model_executor/models/qwen3_5.py: skip_prefixes=["mtp."]).
SKIPPED_PREFIXES = ("mtp.", "model.mtp.")


class Source(Protocol):
    """A checkpoint as servectl reads it, wherever it lives."""

    name: str  # the checkpoint's own name: the repo id (org/name) or the directory's name
    label: str  # how messages name it: org/name[@revision] or the directory path

    def read_bytes(self, filename: str, limit: int) -> bytes | None:
        """A small file of the checkpoint, at most `limit` bytes (UserError above); None when it has none."""

    def safetensors_headers(self) -> dict[str, dict[str, Any]]:
        """Every *.safetensors file's JSON header (tensor name -> dtype, shape, data_offsets)."""

    def weight_files(self) -> dict[str, int]:
        """The *.safetensors files and their sizes in bytes."""

    # what the layout planner reads through (checkpoint.source.CheckpointSource)
    def list_files(self) -> list[str]:
        """The checkpoint's files, relative paths."""

    def read_small(self, path: str, limit: int = SMALL_FILE_LIMIT) -> bytes | None:
        """A small file (UserError above `limit`); None when absent."""

    def read_safetensors_header(self, path: str) -> bytes:
        """One safetensors file's JSON header, raw."""


def read_text(source: Source, filename: str) -> str | None:
    data = source.read_bytes(filename, LIMITS.get(filename, SMALL_FILE_LIMIT))
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source.label}: {filename} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                        "is the checkpoint complete?") from None


def read_json(source: Source, filename: str) -> dict[str, Any] | None:
    text = read_text(source, filename)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source.label}: {filename} is not valid JSON (line {exc.lineno}: {exc.msg})",
                        "is the checkpoint complete?") from None
    if not isinstance(data, dict):
        raise UserError(f"{source.label}: {filename} is not a JSON object", "is the checkpoint complete?")
    return data


def chat_template(source: Source) -> tuple[str | None, str | None]:
    """(the default chat template, where it was found), as transformers looks for it: chat_template.jinja, then
    chat_template.json, then tokenizer_config.json's `chat_template` (a string, or a list of named templates)."""
    text = read_text(source, "chat_template.jinja")
    if text:
        return text, "chat_template.jinja"
    for filename in ("chat_template.json", "tokenizer_config.json"):
        data = read_json(source, filename)
        value = (data or {}).get("chat_template")
        if isinstance(value, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
            named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
            value = named.get("default") or next((v for v in named.values() if isinstance(v, str)), None)
        if isinstance(value, str) and value:
            return value, filename
    return None, None


def parse_header(raw_length: bytes, read, where: str) -> dict[str, Any]:
    """A safetensors header: u64 little-endian length, then that much JSON. `read(n)` returns the next n bytes."""
    if len(raw_length) != 8:
        raise UserError(f"{where} is not a safetensors file (too short)", "is the checkpoint complete?")
    (length,) = struct.unpack("<Q", raw_length)
    if length > HEADER_LIMIT:
        raise UserError(f"{where} has an implausible safetensors header ({length} bytes)", "is the file complete?")
    body = read(length)
    try:
        header = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{where} has a safetensors header that is not JSON", "is the file complete?") from None
    if not isinstance(header, dict):
        raise UserError(f"{where} has a safetensors header that is not a JSON object", "is the file complete?")
    return header


def file_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return parse_header(fh.read(8), fh.read, str(path))


@dataclass(frozen=True)
class WeightBytes:
    loaded: int  # bytes of the tensors vLLM loads
    skipped: int  # bytes of the tensors it skips (the MTP head)
    tensors: int  # tensor count


def weight_bytes(headers: dict[str, dict[str, Any]]) -> WeightBytes:
    """Bytes of every tensor the headers list (dtype size x shape): what vLLM holds after loading them."""
    loaded = skipped = count = 0
    for header in headers.values():
        for tensor, info in header.items():
            if tensor == "__metadata__" or not isinstance(info, dict):
                continue
            try:
                size = int(prod(int(d) for d in info["shape"]) * DTYPE_BYTES.get(str(info["dtype"]), 1))
            except (KeyError, TypeError, ValueError):
                continue  # a malformed entry is not a tensor vLLM loads
            count += 1
            if tensor.startswith(SKIPPED_PREFIXES):
                skipped += size
            else:
                loaded += size
    return WeightBytes(loaded, skipped, count)


@dataclass
class LocalSource:
    """A checkpoint directory on this machine (what `vllm serve DIR` loads)."""

    path: Path
    name: str = field(init=False)
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser().resolve()
        self.name = self.path.name
        self.label = str(self.path)
        if not self.path.is_dir():
            raise UserError(f"{self.path} is not a directory", "give a checkpoint directory (with config.json)")
        if not (self.path / "config.json").is_file():
            raise UserError(f"{self.path} has no config.json", "give the directory that holds the checkpoint's config.json")

    def read_bytes(self, filename: str, limit: int) -> bytes | None:
        target = self.path / filename
        if not target.is_file():
            return None
        with open(target, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise UserError(f"{target} is larger than {limit >> 20} MiB", "that is not the small file it should be")
        return data

    def safetensors_headers(self) -> dict[str, dict[str, Any]]:
        return {p.name: file_header(p) for p in sorted(self.path.glob("*.safetensors"))}

    def weight_files(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in sorted(self.path.glob("*.safetensors"))}

    # the checkpoint-source calls of the layout planner (checkpoint.source.CheckpointSource), bounded the same way

    def _directory(self):
        from servectl.checkpoint.source import LocalDirectory

        return LocalDirectory(self.path)

    def list_files(self) -> list[str]:
        return self._directory().list_files()

    def read_small(self, path: str, limit: int = SMALL_FILE_LIMIT) -> bytes | None:
        return self._directory().read_small(path, limit)

    def read_safetensors_header(self, path: str) -> bytes:
        return self._directory().read_safetensors_header(path)
