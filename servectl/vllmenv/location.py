"""Finding the vLLM environment servectl drives (never imported into servectl's own process).

Order: an explicit --python, then $SERVECTL_VLLM_PYTHON, then the default venv made by
`servectl bootstrap`.
"""

from __future__ import annotations

import os
from pathlib import Path

from servectl.catalog import versions
from servectl.errors import UserError
from servectl.paths import data_dir

DEFAULT_CPU_VLLM = versions.CPU_BUILD_VLLM


def default_venv(version: str = DEFAULT_CPU_VLLM, cpu: bool = True) -> Path:
    return data_dir() / "venvs" / f"vllm-{version}{'-cpu' if cpu else ''}"


def find_vllm_python(explicit: str | os.PathLike | None = None) -> Path:
    """The interpreter of the vLLM environment, or a UserError saying how to make one."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("SERVECTL_VLLM_PYTHON"):
        candidates.append(Path(os.environ["SERVECTL_VLLM_PYTHON"]))
    else:
        candidates.append(default_venv() / "bin" / "python")
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise UserError(
        f"no vLLM environment at {candidates[0]}",
        "run `servectl bootstrap --cpu` (or `servectl bootstrap` on a GPU machine), or pass --python PATH",
    )
