"""Lines for people on stderr (console.warn / info): styled through rich where stderr shows styles, written as
they are otherwise, escaped and redacted either way."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = (
    "import sys\n"
    "from servectl.console import info, warn\n"
    "warn('bad value \\x1b[31mred\\x1b[0m for --api-key sk-0123456789abcdefghij')\n"
    "info('note: one\\ntwo')\n"
    "print('RICH=' + str('rich' in sys.modules))\n"
)


def run(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    clean["TERM"] = "xterm-256color"  # rich writes no colour to TERM=dumb (as CI machines may set), whatever it is told
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env={**clean, **env}, timeout=60)


def test_plain_stderr_gets_the_escaped_redacted_line_without_rich():
    proc = run()
    assert proc.stdout.strip() == "RICH=False"
    assert proc.stderr == ("warning: bad value \\x1b[31mred\\x1b[0m for --api-key <redacted>\nnote: one\ntwo\n")


def test_a_styled_stderr_gets_the_same_words_in_colour():
    proc = run(FORCE_COLOR="1")
    assert proc.stdout.strip() == "RICH=True"
    assert "\x1b[33mwarning: \x1b[0m" in proc.stderr  # rich's yellow
    assert "bad value \\x1b[31mred\\x1b[0m for --api-key <redacted>" in proc.stderr
    assert "sk-0123456789" not in proc.stderr and "\x1b[31m" not in proc.stderr
