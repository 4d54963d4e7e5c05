"""Shared fixtures. Tests run servectl's real code; the vLLM server tests use the real CPU build."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from servectl.catalog import load_catalog


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture()
def cli():
    """Invoke `servectl ...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    from servectl.cli import main

    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run
