"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomic(path: Path, data: str | bytes, mode: int | None = None,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write via a temp file in the same directory, fsync, then rename over the target.

    Keeps the target's permission bits when it exists (or uses `mode`). The temp file is
    `.NAME.*.tmp` (a crash may leave one; `temp_leftovers` finds them). `before_replace` runs
    between the fsync and the rename (crash tests pause there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    if mode is None and path.exists():
        mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def temp_leftovers(path: Path) -> list[Path]:
    """Temp files of write_atomic(path) that a killed process left behind."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))
