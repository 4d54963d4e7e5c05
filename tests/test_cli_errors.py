"""The CLI's error boundary on the failures reported against it: one plain line, exit 2 or 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import free_port
from servectl.cli.app import _boundary

MODEL, GPU = "qwen3.5-35b-a3b-mxfp4", "rtx-5090"


def servectl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a child process: exactly what a user's terminal gets."""
    return subprocess.run([sys.executable, "-m", "servectl", *args], capture_output=True, text=True, env=env, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_rich_markup_in_a_value_is_printed_as_written():
    proc = servectl("render", MODEL, "--gpu", "rtx[/x]")
    assert proc.returncode == 2
    assert "'rtx[/x]'" in one_error_line(proc)


def test_a_bad_name_is_one_line_naming_the_option(tmp_path):
    proc = servectl("up", "tiny-cpu", "--name", "a b", "--python", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "--name 'a b'" in one_error_line(proc)


@pytest.mark.parametrize(
    "option,value", [("--host", "a;b"), ("--secret", "A B"), ("--image", "x y"), ("--name", "x" * 64), ("--name", "../x")]
)
def test_values_that_would_not_stay_one_word_are_refused(option, value):
    proc = servectl("render", MODEL, "--gpu", GPU, option, value)
    assert proc.returncode == 2
    assert option in one_error_line(proc)


def test_control_characters_in_a_message_are_shown_escaped():
    proc = servectl("render", MODEL, "--gpu", "x\x1b[31m\nInjected: line")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "\\x1b" in line and "\\n" in line and "\x1b" not in proc.stderr


def test_an_unreachable_docker_daemon_is_a_failed_check(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    proc = servectl("up", "tiny-cpu", "--runtime", "docker", "--model-path", str(tmp_path), "--port", str(free_port()), env=env)
    assert proc.returncode == 1
    assert "docker" in one_error_line(proc)


def test_a_subprocess_timeout_is_one_line_exit_1(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _boundary(subprocess.TimeoutExpired(["python", "-c", "verify"], 120))
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: `python -c verify ...` did not finish within 120 s\n"


def test_an_unexpected_exception_says_it_is_a_bug_without_a_traceback(capsys, monkeypatch):
    monkeypatch.delenv("SERVECTL_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        _boundary(ZeroDivisionError("division by zero"))
    assert exit_info.value.code == 1
    assert "internal error (ZeroDivisionError" in capsys.readouterr().err
