"""Where the tests expect the vLLM CPU environment scripts/test makes (`servectl bootstrap --cpu`)."""

from __future__ import annotations

from pathlib import Path

from servectl.catalog import versions
from servectl.vllmenv.envs import env_name, venvs_root


def default_venv() -> Path:
    """The CPU build's environment: vllm-<the CPU build's release>-cpu under servectl's venvs folder."""
    return venvs_root() / env_name(versions.CPU_BUILD_VLLM, "cpu")
