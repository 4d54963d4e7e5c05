"""A systemd service unit for the local `vllm serve` process.

ExecStart is the argv renderer's command with an absolute `vllm` (systemd does not search $PATH for
the environment's bin/). Quoting follows systemd.syntax(7): words are single-quoted like a shell's,
and `%` (specifiers), `$` (variable expansion) and `\\` (C escapes) are doubled so values arrive as
written. Secrets never enter the unit: they come from an EnvironmentFile the operator writes.
"""

from __future__ import annotations

import shlex

from servectl.render.argv import argv
from servectl.spec.models import LaunchSpec

DEFAULT_VLLM_BIN = "/opt/vllm/bin/vllm"
SECRETS_DIR = "/etc/servectl"


def filename(spec: LaunchSpec) -> str:
    return f"{spec.name}.service"


def _word(arg: str) -> str:
    escaped = arg.replace("\\", "\\\\").replace("%", "%%").replace("$", "$$")
    return shlex.quote(escaped)


def _env_assignment(key: str, value: str) -> str:
    """Environment="K=V" (double quotes keep spaces; escape what systemd would interpret)."""
    text = f"{key}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'Environment="{text}"'


def render(spec: LaunchSpec, vllm_bin: str = DEFAULT_VLLM_BIN) -> str:
    cmd = argv(spec, executable=[vllm_bin, "serve"])
    # Same layout as the container's /root/.cache: huggingface/ and vllm/ (torch.compile artefacts).
    env = {"XDG_CACHE_HOME": spec.cache_host_path, **spec.env}
    secrets_file = f"{SECRETS_DIR}/{spec.name}.env"
    lines = [
        "[Unit]",
        f"Description=vLLM OpenAI-compatible server: {spec.recipe} on {spec.profile}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        *(_env_assignment(k, v) for k, v in env.items()),
    ]
    if spec.secret_env:
        lines.append(f"# {', '.join(spec.secret_env)}: NAME=value lines in this file (mode 0600), never in the unit")
        lines.append(f"EnvironmentFile=-{secrets_file}")
    lines += [
        "ExecStart=" + " ".join(_word(a) for a in cmd),
        "Restart=on-failure",
        "RestartSec=10",
        # SIGTERM to vllm only, so it stops its engine workers itself; SIGKILL to the rest after the timeout.
        "KillMode=mixed",
        # Weights download, torch.compile and CUDA graph capture can take many minutes on a cold cache.
        "TimeoutStartSec=1800",
        "TimeoutStopSec=90",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
