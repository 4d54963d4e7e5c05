"""A checkpoint's files seen through a small interface: list them, read one small file, read one safetensors
header. A local directory implements it here; a hub repository (ranged reads) can implement the same three
calls. Every read is bounded: a file above its limit is refused, never read whole."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Protocol

from servectl.errors import UserError
from servectl.fsutil import open_regular

# Limits on what a checkpoint may make servectl read (config files are kilobytes; the largest real
# tokenizer_config.json files with inline chat templates are a few hundred KiB).
SMALL_FILE_LIMIT = 4 * 2**20
# A safetensors header lists every tensor's name, dtype, shape and offsets: ~100 B per tensor, so even
# checkpoints with 100k tensors stay far below this.
SAFETENSORS_HEADER_LIMIT = 100 * 2**20
MAX_FILES = 100_000


class CheckpointSource(Protocol):
    """Read access to a checkpoint's files (implemented by LocalDirectory; a hub source adds ranged reads)."""

    name: str  # how messages name the checkpoint (a path or a repo id)

    def list_files(self) -> list[str]:
        """Relative paths of the checkpoint's files (top level and subfolders), sorted."""
        ...

    def read_small(self, path: str, limit: int = SMALL_FILE_LIMIT) -> bytes | None:
        """A small file's bytes, None when absent; a UserError when it is larger than `limit`."""
        ...

    def read_safetensors_header(self, path: str) -> bytes:
        """The JSON header of a .safetensors file (its first 8 bytes give the header's length)."""
        ...


def header_length(first8: bytes, where: str) -> int:
    """The header length a safetensors file declares in its first 8 bytes (little-endian u64), checked."""
    if len(first8) != 8:
        raise UserError(f"{where} is not a safetensors file (too short)", "is the file complete?")
    (length,) = struct.unpack("<Q", first8)
    if length > SAFETENSORS_HEADER_LIMIT:
        raise UserError(f"{where} has an implausible safetensors header ({length} bytes)", "is the file complete?")
    return length


class LocalDirectory:
    """A checkpoint directory on this machine."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.name = str(root)
        if not self.root.is_dir():
            raise UserError(f"{self.name} is not a directory", "give a checkpoint directory (config.json and *.safetensors)")

    def _path(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        root = self.root.resolve()
        if p != root and root not in p.parents:
            raise UserError(f"{rel!r} lies outside the checkpoint {self.name}")
        return p

    def list_files(self) -> list[str]:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in filenames:
                out.append(str((Path(dirpath) / f).relative_to(self.root)))
                if len(out) > MAX_FILES:
                    raise UserError(f"{self.name} holds more than {MAX_FILES} files", "point at the checkpoint folder itself")
        return sorted(out)

    def read_small(self, path: str, limit: int = SMALL_FILE_LIMIT) -> bytes | None:
        p = self._path(path)
        if not p.is_file():
            return None
        with open_regular(p, f"{self.name}/{path}") as fh:  # never a FIFO or a device under a file's name
            data = fh.read(limit + 1)
        if len(data) > limit:
            size = f"{limit >> 20} MiB" if limit % 2**20 == 0 else f"{limit // 1024} KiB"
            raise UserError(f"{self.name}/{path} is larger than {size}", "is it the right file?")
        return data

    def read_safetensors_header(self, path: str) -> bytes:
        p = self._path(path)
        with open_regular(p, f"{self.name}/{path}") as fh:
            length = header_length(fh.read(8), f"{self.name}/{path}")
            raw = fh.read(length)
        if len(raw) != length:
            raise UserError(f"{self.name}/{path} ends inside its safetensors header", "is the file complete?")
        return raw
