"""The small interface a checkpoint is read through, and its local-directory implementation.

A `Source` gives a few small files by name (config.json, generation_config.json, tokenizer_config.json, the chat
template), the safetensors headers (never a tensor), and the weight files' sizes. Every read has a size limit:
these files come from outside (a download, someone's directory) and a 2 GB "config.json" must not be read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from servectl.checkpoint.safetensors import file_header
from servectl.checkpoint.source import SMALL_FILE_LIMIT, LocalDirectory
from servectl.errors import UserError

# Size limits of what is read. tokenizer_config.json carries the added-token table (a few MB for some
# families); the others are small (SMALL_FILE_LIMIT). Safetensors headers: servectl.checkpoint.safetensors.
TOKENIZER_CONFIG_LIMIT = 32 << 20
LIMITS = {"tokenizer_config.json": TOKENIZER_CONFIG_LIMIT}


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
        raise UserError(
            f"{source.label}: {filename} is not UTF-8 text ({exc.reason} at byte {exc.start})", "is the checkpoint complete?"
        ) from None


def read_json(source: Source, filename: str) -> dict[str, Any] | None:
    text = read_text(source, filename)
    if text is None:
        return None
    try:
        data = json.loads(text)  # as transformers reads it (NaN and Infinity accepted): figures are checked where read
    except ValueError as exc:
        why = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise UserError(f"{source.label}: {filename} is not valid JSON ({why})", "is the checkpoint complete?") from None
    except RecursionError:
        raise UserError(f"{source.label}: {filename} is nested too deep to read", "is the checkpoint complete?") from None
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
        return self._directory().read_small(filename, limit)

    def safetensors_headers(self) -> dict[str, dict[str, Any]]:
        return {p.name: file_header(p) for p in sorted(self.path.glob("*.safetensors"))}

    def weight_files(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in sorted(self.path.glob("*.safetensors"))}

    # the checkpoint-source calls of the layout planner (checkpoint.source.CheckpointSource): one local reader,
    # its limits, its regular-file and inside-the-checkpoint checks

    def _directory(self) -> LocalDirectory:
        return LocalDirectory(self.path)

    def list_files(self) -> list[str]:
        return self._directory().list_files()

    def read_small(self, path: str, limit: int = SMALL_FILE_LIMIT) -> bytes | None:
        return self._directory().read_small(path, limit)

    def read_safetensors_header(self, path: str) -> bytes:
        return self._directory().read_safetensors_header(path)
