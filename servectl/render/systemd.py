"""A systemd service unit for the local `vllm serve` process.

ExecStart is the argv renderer's command with an absolute `vllm` (systemd does not search $PATH for
the environment's bin/). Every value is written so systemd reads back exactly the original
(systemd.syntax(7) "Quoting", systemd.service(5) "Command lines", systemd.unit(5) "Specifiers"):
a word with anything but plain characters in double quotes (so a lone `;` is an argument, not a
command separator); inside, `\\` and `"` backslash-escaped and control characters as C escapes (`\\n`, `\\xNN`), which systemd
unescapes in quoted words, so a newline can never start a new directive; `%` doubled (specifiers);
in ExecStart also `$` doubled (variable expansion). Environment= does not expand variables, so `$`
stays single there. NUL cannot be represented: refused. Secrets never enter the unit: they come
from an EnvironmentFile the operator writes.
"""

from __future__ import annotations

import re

from servectl.errors import UserError
from servectl.render.argv import argv
from servectl.spec.models import LaunchSpec

DEFAULT_VLLM_BIN = "/opt/vllm/bin/vllm"
SECRETS_DIR = "/etc/servectl"
_BARE = re.compile(r"^[A-Za-z0-9_@%+=:,./$-]+$")  # no quotes, backslashes, spaces, `;` or control characters
_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def filename(spec: LaunchSpec) -> str:
    return f"{spec.name}.service"


def quoted(text: str) -> str:
    """A double-quoted systemd word that unquotes and unescapes to `text` (specifiers not yet handled)."""
    if "\0" in text:
        raise UserError("a value contains a NUL character, which a systemd unit cannot carry", "remove it")
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def exec_word(arg: str) -> str:
    """One ExecStart argument: `%%` for a literal %, `$$` for a literal $ (systemd.service(5)); quoted
    unless it is made only of characters systemd reads literally in a bare word."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    return escaped if _BARE.match(escaped) else quoted(escaped)


def _env_assignment(key: str, value: str) -> str:
    """Environment="K=V": specifiers expand here, variables do not (systemd.exec(5) Environment=)."""
    return "Environment=" + quoted(f"{key}={value}".replace("%", "%%"))


def _plain_value(text: str) -> str:
    """A value for a key that takes the rest of the line (Description=): specifiers escaped, one line."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise UserError(f"{text!r} contains control characters, which a systemd unit line cannot carry", "remove them")
    return text.replace("%", "%%")


def render(spec: LaunchSpec, vllm_bin: str = DEFAULT_VLLM_BIN) -> str:
    cmd = argv(spec, executable=[vllm_bin, "serve"])
    # Same layout as the container's /root/.cache: huggingface/ and vllm/ (torch.compile artefacts).
    env = {"XDG_CACHE_HOME": spec.cache_host_path, **spec.env}
    secrets_file = f"{SECRETS_DIR}/{spec.name}.env"
    lines = [
        "[Unit]",
        f"Description={_plain_value(f'vLLM OpenAI-compatible server: {spec.recipe} on {spec.profile}')}",
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
        "ExecStart=" + " ".join(exec_word(a) for a in cmd),
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
