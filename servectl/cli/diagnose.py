"""`servectl diagnose LOGFILE|-`: the root cause of a failed vLLM start from its log, and the flag that fixes it.

It prints the root error always; it exits 0 when a rule found the cause (the diagnosis is the useful output),
1 when none matched (the root error is still shown), 2 for unreadable input (missing file, binary data).
"""

from __future__ import annotations

import click

from servectl.cli import options

from servectl.cli.app import console, emit_json
from servectl.errors import EXIT_CHECK_FAILED


@click.command("diagnose")
@click.argument("logfile")
@click.option(
    "--model",
    "model",
    metavar="NAME",
    help="The model of the log when the log does not say: a recipe name (its parsers and memory layout) or a repo / path (its family).",
)
@options.JSON("Keys: cause, remedy, fix, evidence, rule, root_error.")
def diagnose(logfile: str, model: str | None, as_json: bool) -> None:
    """Explain a failed vLLM start from its log (LOGFILE, or - for stdin): the root error, and the cause, remedy and
    the flags that fix it when a rule knows it."""
    from servectl.verify.diagnose import explain_file, text_lines

    # streamed once, head and tail kept: any size, bounded memory (servectl.fsutil.read_log)
    found = explain_file(logfile, "stdin" if logfile == "-" else logfile, model)
    if as_json:
        emit_json(found.model_dump(mode="json"))
    else:
        for line in text_lines(found):
            console.print(line, soft_wrap=True)
    if found.rule is None:
        raise SystemExit(EXIT_CHECK_FAILED)
