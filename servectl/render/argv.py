"""`vllm serve MODEL ...`: the command line for a local process."""

from __future__ import annotations

import shlex

from servectl.spec.models import LaunchSpec


def argv(spec: LaunchSpec, executable: list[str] | None = None) -> list[str]:
    """The argv list; `executable` replaces `vllm serve` (e.g. [python, -m, vllm.entrypoints.cli.main, serve])."""
    cmd = [*(executable or ["vllm", "serve"]), spec.model, *spec.vllm_args]
    if spec.argv_binds:
        cmd += ["--host", spec.host, "--port", str(spec.port)]
    return cmd


def env_prefix(spec: LaunchSpec) -> list[str]:
    """Non-secret environment as NAME=value words (secrets are inherited from the caller's environment)."""
    return [f"{k}={v}" for k, v in spec.env.items()]


def render(spec: LaunchSpec) -> str:
    return shlex.join([*env_prefix(spec), *argv(spec)]) + "\n"
