"""Following a vLLM start-up: log lines -> phases, and a readiness wait that fails fast.

The wait follows vLLM's own tests/utils.py RemoteOpenAIServer: poll /health, and check the
process in the same loop so a dead server fails at once with its log tail instead of waiting
for the deadline. /health alone is not trusted (a server that took the port after the pre-flight
answers too, while ours is still importing; ours then exits on its bind error): the server must
be alive and the one listening when it answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from servectl import netio
from servectl.errors import UserError
from servectl.fsutil import LINE_LIMIT, LOG_TAIL_LIMIT, MIB, open_regular

# (phase id, label, pattern). Patterns are vLLM 0.32 log lines (CPU build, captured in
# tests/data/vllm-0.32.0-cpu-startup.log) and their GPU spellings from vLLM's
# v1/worker/gpu_model_runner.py, v1/core/kv_cache_utils.py and compilation/backends.py.
PHASES: list[tuple[str, str, re.Pattern[str]]] = [
    ("config", "reading the model config", re.compile(r"Resolved architecture:|non-default args:")),
    ("engine", "starting the engine processes", re.compile(r"\(EngineCore[^)]*\)|Waiting for init message from front-end")),
    (
        "weights",
        "loading weights",
        re.compile(r"Starting to load model|Loading weights took|Model loading took|Loading safetensors checkpoint shards"),
    ),
    (
        "profiling",
        "profiling memory",
        re.compile(r"Memory profiling takes|Available KV cache memory|GiB for KV cache on node|init engine \(profile"),
    ),
    ("kv_cache", "allocating the KV cache", re.compile(r"(?:GPU|CPU|XPU) KV cache size:\s*[\d,]+\s*tokens")),
    (
        "compile",
        "compiling / capturing CUDA graphs",
        re.compile(r"torch\.compile takes|Capturing CUDA graph|Graph capturing finished|Compiling a graph"),
    ),
    ("api", "starting the API server", re.compile(r"Starting vLLM (?:API )?server on|Application startup complete")),
]
PHASE_LABELS = {pid: label for pid, label, _ in PHASES} | {"ready": "ready (/health answered)"}
_KV_TOKENS = re.compile(r"(?:GPU|CPU|XPU) KV cache size:\s*([\d,]+)\s*tokens")


def match_phase(line: str) -> str | None:
    """The phase a log line announces, or None (later phases first: every EngineCore line names the engine)."""
    for pid, _label, pattern in reversed(PHASES):
        if pattern.search(line):
            return pid
    return None


def kv_cache_tokens(text: str) -> int | None:
    """KV cache size vLLM logged, in tokens (last one when the log holds several starts)."""
    try:
        from servectl.plan.vllm_log import parse_text  # the planner's parser of vLLM's figures
    except ImportError:
        pass
    else:
        return parse_text(text).kv_cache_tokens
    found = _KV_TOKENS.findall(text)
    return int(found[-1].replace(",", "")) if found else None


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class StartupResult:
    ready: bool
    elapsed_s: float
    phases: dict[str, float] = field(default_factory=dict)  # phase id -> seconds since start
    kv_cache_tokens: int | None = None
    failure: str | None = None  # "exited" | "deadline"
    log_text: str = ""


class LogFollower:
    """Reads what was appended to a log file since the last call (from a start offset), in bounded steps:
    at most READ_STEP bytes per call, lines cut at LINE_LIMIT, and `text` keeps the last LOG_TAIL_LIMIT
    characters (a server that floods its log cannot grow servectl's memory)."""

    READ_STEP = 4 * MIB

    def __init__(self, path: Path, offset: int = 0):
        self.path, self.offset, self.text = path, offset, ""
        self._partial = ""

    def read_lines(self) -> list[str]:
        try:
            with open_regular(self.path) as fh:
                fh.seek(self.offset)
                chunk = fh.read(self.READ_STEP)
        except UserError:  # not there yet (or not a file)
            return []
        self.offset += len(chunk)
        decoded = chunk.decode(errors="replace")
        self.text = (self.text + decoded)[-LOG_TAIL_LIMIT:]
        lines = (self._partial + decoded).split("\n")
        self._partial = lines.pop()[:LINE_LIMIT]  # an unfinished last line waits for the next read
        return [line[:LINE_LIMIT] for line in lines]


def health_ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(
    log_path: Path,
    alive: Callable[[], bool],
    health_url: str,
    timeout_s: float,
    on_phase: Callable[[str, float], None] | None = None,
    offset: int = 0,
    poll_s: float = 0.1,
    listening: Callable[[], bool] = lambda: True,
) -> StartupResult:
    """Follow the log and poll `health_url` until ready, the process dies, or timeout_s passes. `listening`:
    whether the port is ours (an answer from another process is not readiness)."""
    start = time.monotonic()
    follower = LogFollower(log_path, offset)
    phases: dict[str, float] = {}

    def seen(pid: str) -> None:
        if pid not in phases:
            phases[pid] = round(time.monotonic() - start, 2)
            if on_phase:
                on_phase(pid, phases[pid])

    def result(ready: bool, failure: str | None = None) -> StartupResult:
        follower.read_lines()
        text = follower.text + follower._partial
        return StartupResult(ready, round(time.monotonic() - start, 2), phases, kv_cache_tokens(text), failure, text)

    with netio.client(2.0, body_limit=MIB) as client:
        while True:
            for line in follower.read_lines():
                pid = match_phase(line)
                if pid:
                    seen(pid)
            if not alive():
                return result(False, "exited")
            if health_ok(client, health_url):
                if not alive():
                    return result(False, "exited")
                if listening():  # answered by our server, not another that took the port
                    seen("ready")
                    return result(True)
            if time.monotonic() - start > timeout_s:
                return result(False, "deadline")
            time.sleep(poll_s)
