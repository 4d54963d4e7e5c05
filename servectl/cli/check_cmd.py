"""`servectl check URL`: prove a served model is healthy and answers sensibly."""

from __future__ import annotations

import click
from servectl.cli.app import console, emit_json, err_console
from servectl.errors import CheckFailed
from servectl.verify.health import run_checks
from servectl.verify.report import STATUS_STYLE, CheckResult, report_table

@click.command()
@click.argument("url", default="http://127.0.0.1:8000")
@click.option("--model", help="Expected served model name (or a recipe name); default: the one /v1/models lists.")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the server's API key (sent as Bearer).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds allowed per request.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(url: str, model: str | None, api_key_env: str | None, timeout: float, as_json: bool) -> None:
    """Check a live OpenAI-compatible endpoint: health, models, chat, output sanity, reasoning,
    tools, vision, streaming, metrics. Exit 0 when every applicable check passes, 1 otherwise,
    2 when the server cannot be reached."""

    def progress(result: CheckResult) -> None:
        if not as_json and err_console.is_terminal:
            err_console.print(f"  {result.name:<10} ", end="")
            err_console.print(*STATUS_STYLE[result.status][:1], style=STATUS_STYLE[result.status][1])

    report = run_checks(url, model=model, api_key_env=api_key_env, timeout_s=timeout, on_check=progress)
    if as_json:
        emit_json(report.to_json())
    else:
        console.print(report_table(report))
    if not report.passed:
        failed = [c.name for c in report.checks if c.status == "fail"]
        raise CheckFailed(f"{len(failed)} check(s) failed: {', '.join(failed)}", "see the table above")
