"""`servectl check URL [--level quick|full|soak]`: prove a served model is healthy and answers sensibly."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from servectl.cli import options
from servectl.cli.app import console, emit_json, err_console
from servectl.errors import CheckFailed, UserError
from servectl.verify.report import STATUS_STYLE, CheckResult, report_table

if TYPE_CHECKING:
    from servectl.verify.levels import Level


def _check_url(url: str) -> None:
    """An http(s) URL with a host and nothing a URL cannot carry (spaces, control characters)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a port out of range or not a number
        ok = False
    if not ok or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UserError(f"{url!r} is not an http(s) URL of a server", "e.g. http://127.0.0.1:8000")


@click.command()
@click.argument("url", default="http://127.0.0.1:8000")
@click.option(
    "--level",
    type=click.Choice(["quick", "full", "soak"]),
    default="quick",
    show_default=True,
    help="quick: one request of each kind; full: + concurrency, context, tool-stream, reasoning-leak; "
    "soak: quick + mixed load for --duration.",
)
@click.option("--duration", metavar="TIME", help="How long `--level soak` loads the server (30s, 10m, 1h) [default: 10m].")
@click.option(
    "--max-num-seqs",
    type=click.IntRange(min=1),
    metavar="N",
    help="The concurrency the server promises, when servectl cannot read its flags (a server on another machine).",
)
@click.option(
    "--model",
    help="Expected served model name, or a recipe (curated, your own, a hub repo id or a checkpoint "
    "directory: its parsers say what is checked); default: the one /v1/models lists.",
)
@options.API_KEY_ENV("Here: the server's key, sent as a Bearer token.")
@options.TIMEOUT(
    "Each request may take this long in all: connect, answer and body (a server dripping bytes is cut off).", default=120.0
)
@options.JSON("Here: the report, and its level.")
def check(
    url: str,
    level: Level,
    duration: str | None,
    max_num_seqs: int | None,
    model: str | None,
    api_key_env: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Check a live OpenAI-compatible endpoint. quick: health, models, chat, output sanity, reasoning,
    tools, vision, streaming, metrics. full adds concurrency, context, tool-stream, reasoning-leak;
    soak runs quick, then a mixed load for --duration. Exit 0 when every applicable check passes, 1 otherwise,
    2 when the server cannot be reached or the input is wrong."""
    from servectl.verify.levels import run_level
    from servectl.verify.soak import parse_duration

    _check_url(url)
    if duration is not None and level != "soak":
        raise UserError("--duration applies to --level soak only", f"add --level soak or drop --duration {duration}")
    duration_s = parse_duration(duration) if duration is not None else None

    def on_check(result: CheckResult) -> None:
        if not as_json and err_console.is_terminal:
            err_console.print(f"  {result.name:<14} ", end="")
            err_console.print(*STATUS_STYLE[result.status][:1], style=STATUS_STYLE[result.status][1])

    def on_progress(text: str) -> None:  # long checks say what they do (stderr: --json output stays clean)
        err_console.print(f"  {text}", highlight=False, soft_wrap=True)

    from servectl.launch.report import check_expectations

    expect = check_expectations(url, model)
    report = run_level(
        url,
        level,
        model=model if expect is None else expect.served_name,
        api_key_env=api_key_env,
        timeout_s=timeout,
        duration_s=duration_s,
        max_num_seqs=max_num_seqs,
        on_check=on_check,
        on_progress=on_progress,
        expect=expect,
    )
    if as_json:
        emit_json({**report.to_json(), "level": level})
    else:
        console.print(report_table(report))
    if not report.passed:
        failed = [c.name for c in report.checks if c.status == "fail"]
        raise CheckFailed(f"{len(failed)} check(s) failed: {', '.join(failed)}", "see the table above")
