"""vLLM's own argument parser, asked from outside: parse_check.py runs in the vLLM environment's
interpreter (never imported here) and answers for many argv lists in one process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from servectl.errors import UserError

_SCRIPT = Path(__file__).with_name("parse_check.py")


def vllm_parse(argvs: list[list[str]], python: Path, timeout: float = 300) -> list[str | None]:
    """vLLM's verdict on each argv (the words after `vllm serve`): None if accepted, else its error line."""
    if not argvs:
        return []
    proc = subprocess.run(
        [str(python), str(_SCRIPT)], input=json.dumps(argvs), capture_output=True, text=True, timeout=timeout,
    )
    try:
        results = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not run vLLM's argument parser with {python}: {tail}", "check the vLLM environment") from None
    return [r["error"] for r in results]
