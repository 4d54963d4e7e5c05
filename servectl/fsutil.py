"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomic(
    path: Path, data: str | bytes, mode: int | None = None, before_replace: Callable[[], None] | None = None
) -> None:
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


# --------------------------------------------------------------------------- bounded reads
# Every file or stream servectl reads goes through these: a size limit (or an incremental read), no
# following of a symlink where the file is servectl's own, and text that is not text refused as bad input.

KIB, MIB = 2**10, 2**20
JSON_LIMIT = 4 * MIB  # records, result files, captured tool output, config files
LOG_TAIL_LIMIT = 16 * MIB  # what is kept of a log read from its end
LINE_LIMIT = 64 * KIB  # a longer line is cut there (the rest of it is skipped, not kept)


def _too_big(what: str, limit: int) -> "Exception":
    from servectl.errors import UserError

    return UserError(
        f"{what} is larger than {limit // MIB if limit >= MIB else limit // KIB} "
        f"{'MiB' if limit >= MIB else 'KiB'}: not an input servectl reads",
        "pass the file that command expects",
    )


def read_bytes_capped(path: Path | str, limit: int, what: str | None = None, nofollow: bool = False) -> bytes:
    """At most `limit` bytes of a regular file (or stdin for "-"); UserError when there is more, when it is
    not a regular file (a FIFO, /dev/zero, a directory) or, with nofollow, a symlink."""
    import stat
    import sys

    from servectl.errors import UserError

    what = what or str(path)
    if str(path) == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        flags = os.O_RDONLY | (os.O_NOFOLLOW if nofollow else 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if nofollow and exc.errno == 40:  # ELOOP: a symlink where servectl keeps its own file
                raise UserError(
                    f"{what} is a symbolic link; servectl reads its own files only as regular files", "remove the link"
                ) from None
            raise UserError(f"cannot read {what}: {exc.strerror}", "check the path") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UserError(f"{what} is not a regular file", "pass a file")
            if st.st_size > limit:
                raise _too_big(what, limit)
            data = fh.read(limit + 1)
    if len(data) > limit:
        raise _too_big(what, limit)
    return data


def decode_text(data: bytes, what: str) -> str:
    """UTF-8 text, or UserError: NUL bytes or undecodable bytes mean it is not text."""
    from servectl.errors import UserError

    if b"\x00" in data:
        raise UserError(f"{what} is not text (binary data)", "pass a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} is not UTF-8 text", "pass a text file") from None


def read_text_capped(path: Path | str, limit: int, what: str | None = None, nofollow: bool = False) -> str:
    """A text file of at most `limit` bytes (see read_bytes_capped, decode_text)."""
    what = what or str(path)
    return decode_text(read_bytes_capped(path, limit, what, nofollow=nofollow), what)


def read_json_capped(path: Path | str, limit: int = JSON_LIMIT, what: str | None = None, nofollow: bool = False):
    """A JSON file of at most `limit` bytes, parsed strictly (no NaN / Infinity); UserError otherwise."""
    from servectl.errors import UserError

    what = what or str(path)
    text = read_text_capped(path, limit, what, nofollow=nofollow)
    try:
        return loads_strict(text)
    except ValueError as exc:
        raise UserError(f"{what} is not valid JSON ({exc})", "pass the file servectl wrote") from None


def loads_strict(text: str | bytes):
    """json.loads that refuses NaN, Infinity, numbers that overflow a float (1e400) and nesting Python cannot follow."""
    import json

    def no_constant(name: str):
        raise ValueError(f"{name} is not a JSON number")

    def finite_float(raw: str) -> float:
        import math

        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"{raw} is out of range for a number")
        return value

    try:
        return json.loads(text, parse_constant=no_constant, parse_float=finite_float)
    except RecursionError:
        raise ValueError("nested too deep") from None


def open_regular(path: Path | str, what: str | None = None):
    """A binary file object of a regular file (never blocking on a FIFO, never a device such as /dev/zero);
    UserError otherwise."""
    import stat

    from servectl.errors import UserError

    what = what or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UserError(f"cannot read {what}: {exc.strerror}", "check the path") from None
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise UserError(f"{what} is not a regular file", "pass a file")
    return fh


def read_tail(path: Path | str, limit: int = LOG_TAIL_LIMIT) -> str:
    """The last `limit` bytes of a file as text (undecodable bytes replaced; a cut first line dropped):
    how servectl reads a log, whatever its size."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        start = max(0, size - limit)
        fh.seek(start)
        data = fh.read(limit)
    text = data.decode("utf-8", errors="replace")
    if start > 0 and "\n" in text:
        text = text.split("\n", 1)[1]
    return text


def iter_lines(fh, line_limit: int = LINE_LIMIT, chunk: int = MIB):
    """Lines of a binary stream, decoded, each cut at `line_limit` characters; memory stays bounded by
    one chunk plus one line whatever the input (a 100 MB line is read, not kept)."""
    buf = b""
    skipping = False
    read = getattr(fh, "read1", fh.read)  # a pipe: what is there now, so lines arrive as they are written
    while True:
        data = read(chunk)
        if not data:
            break
        buf += data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1 :]
            if skipping:
                skipping = False
                continue
            yield line[:line_limit].decode("utf-8", errors="replace")
        if len(buf) > line_limit:
            if not skipping:
                yield buf[:line_limit].decode("utf-8", errors="replace")
                skipping = True
            buf = b""
    if buf and not skipping:
        yield buf[:line_limit].decode("utf-8", errors="replace")


class LogExcerpt:
    """What servectl keeps of a log of any size: its head and its tail (whole lines, each cut at LINE_LIMIT)
    and where the tail starts. A failed start's root error is near the end; the configuration lines a
    diagnosis needs (the command, vLLM's non-default args, the model) are near the start."""

    def __init__(self, head: str, tail: str, tail_first_line: int, total_bytes: int):
        self.head, self.tail, self.tail_first_line, self.total_bytes = head, tail, tail_first_line, total_bytes

    @property
    def whole(self) -> bool:
        return self.head == ""


def _cut_lines(data: bytes, line_limit: int) -> str:
    return "\n".join(line[:line_limit].decode("utf-8", errors="replace") for line in data.split(b"\n"))


def read_log(
    source, what: str, head_bytes: int = MIB, tail_bytes: int = 4 * MIB, line_limit: int = LINE_LIMIT, chunk: int = MIB
) -> LogExcerpt:
    """Stream a log (a path, "-" for stdin, or a binary file object) once, keeping at most
    head_bytes + tail_bytes + one chunk in memory, and counting lines on the way. Binary data (NUL bytes)
    is bad input (UserError)."""
    import sys
    from collections import deque

    from servectl.errors import UserError

    if isinstance(source, (str, Path)):
        if str(source) == "-":
            return read_log(sys.stdin.buffer, what, head_bytes, tail_bytes, line_limit, chunk)
        import stat

        try:
            fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            raise UserError(f"cannot read {what}: {exc.strerror}", "pass a vLLM log file or - for stdin") from None
        with os.fdopen(fd, "rb") as fh:
            if stat.S_ISDIR(os.fstat(fh.fileno()).st_mode):
                raise UserError(f"cannot read {what}: it is a directory", "pass a vLLM log file or - for stdin")
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                os.set_blocking(fh.fileno(), True)  # a pipe or FIFO: read it as a stream
            return read_log(fh, what, head_bytes, tail_bytes, line_limit, chunk)
    head = bytearray()
    head_done = False
    tail: deque[bytes] = deque()
    tail_size = 0
    lines_before_tail = 0  # newlines in data dropped from the tail window
    total = 0
    small: bytearray | None = bytearray()  # the whole log while it is no larger than head + tail
    while True:
        try:
            data = source.read(chunk)
        except OSError as exc:
            raise UserError(f"cannot read {what}: {exc.strerror}", "pass a vLLM log file or - for stdin") from None
        if not data:
            break
        if b"\x00" in data:
            raise UserError(f"{what} is not a text log (binary data)", "pass the log vLLM wrote (servectl logs NAME)")
        total += len(data)
        if small is not None:
            small += data
            if len(small) > head_bytes + tail_bytes:
                small = None
        if not head_done:
            head += data[: max(0, head_bytes - len(head))]
            head_done = len(head) >= head_bytes
        tail.append(data)
        tail_size += len(data)
        while tail_size - len(tail[0]) >= tail_bytes:
            dropped = tail.popleft()
            tail_size -= len(dropped)
            lines_before_tail += dropped.count(b"\n")
    if small is not None:
        return LogExcerpt("", _cut_lines(bytes(small), line_limit), 1, total)
    window = b"".join(tail)
    cut = max(0, len(window) - tail_bytes)
    lines_before_tail += window[:cut].count(b"\n")
    window = window[cut:]
    if b"\n" in window:  # the window starts inside a line: drop that part line
        nl = window.index(b"\n")
        window = window[nl + 1 :]
        lines_before_tail += 1
    head_text = bytes(head[: head.rfind(b"\n")]) if b"\n" in head else bytes(head)
    return LogExcerpt(_cut_lines(head_text, line_limit), _cut_lines(window, line_limit), lines_before_tail + 1, total)


def yaml_call(fn, *args, **kwargs):
    """A PyYAML call (load, compose) whose input nests deeper than Python's recursion limit raises yaml.YAMLError,
    as any other unreadable YAML does, instead of RecursionError."""
    import yaml

    try:
        return fn(*args, **kwargs)
    except RecursionError:
        raise yaml.YAMLError("nested too deep to read") from None
