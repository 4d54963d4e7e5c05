"""`servectl bench NAME|URL` and `servectl bench compare A.json B.json`: vLLM's own serving
benchmark under a fixed protocol, one shareable result file, and a side-by-side comparison."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from servectl.cli import options
from rich.table import Table
from rich.text import Text

from servectl.console import console, emit_json, info


class _BenchGroup(click.Group):
    """`bench TARGET ...` runs the benchmark; `bench compare ...` compares. A first argument that is
    not a subcommand is the target of the (hidden) run command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_BenchGroup)
def bench() -> None:
    """Benchmark a served model with vLLM's own `vllm bench serve`, or compare two results.

    \b
    servectl bench NAME|URL [--concurrency 1,4,16] [--num-prompts N] [--input-len N --output-len N]
                   [-o result.json] [--plot throughput.png] [--json]
    servectl bench compare A.json B.json

    `servectl bench URL --help` lists the run's options.
    """


@bench.command("run", hidden=True)
@click.argument("target")
@click.option("--concurrency", "levels", default="1,4,16", show_default=True, help="Concurrency levels, comma separated.")
@click.option("--num-prompts", type=click.IntRange(min=1), help="Requests per level [default: max(32, 4 x highest level)].")
@click.option("--input-len", type=click.IntRange(min=1), default=1024, show_default=True, help="Prompt tokens per request.")
@click.option(
    "--output-len", type=click.IntRange(min=1), default=256, show_default=True, help="Generated tokens per request (EOS ignored)."
)
@click.option("--model", help="Served model name to benchmark [default: the first /v1/models lists].")
@click.option("--tokenizer", help="Tokenizer directory or repo id for the prompts [default: the served model's root].")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Result file [default: bench-MODEL-DATE.json here].",
)
@options.PLOT("Here: throughput and latency against concurrency.")
@options.PYTHON(
    "Its `vllm bench serve` runs the benchmark. Default: $SERVECTL_VLLM_PYTHON, else the bootstrapped "
    "environment, else any there is."
)
@options.JSON("Here: the result document.")
def bench_run(
    target: str,
    levels: str,
    num_prompts: int | None,
    input_len: int,
    output_len: int,
    model: str | None,
    tokenizer: str | None,
    output: Path | None,
    plot: Path | None,
    python: str | None,
    as_json: bool,
) -> None:
    """Run vLLM's serving benchmark against TARGET (a deployment name or a URL) at each concurrency
    level, under servectl's fixed protocol, and write one result file."""
    from servectl.bench.protocol import Protocol, default_num_prompts, parse_levels
    from servectl.bench.runner import run_bench, target_for, write_result
    from servectl.errors import UserError

    try:
        concurrency = parse_levels(levels)
    except ValueError as exc:
        raise UserError(str(exc), "e.g. --concurrency 1,4,16") from None
    if plot is not None:
        from servectl.bench.plot import plot_format, require_matplotlib

        plot_format(plot)
        require_matplotlib()  # before the run, not after it
    protocol = Protocol(
        concurrency=concurrency,
        num_prompts=num_prompts or default_num_prompts(concurrency),
        input_len=input_len,
        output_len=output_len,
    )
    tgt = target_for(target, model=model, tokenizer=tokenizer)
    info(
        f"vllm bench serve against {tgt.url}: concurrency {levels}, {protocol.num_prompts} prompts of "
        f"{input_len}+{output_len} tokens per level"
    )

    block = {"open": False}

    def show(line: str) -> None:  # which run is going, then vLLM's own result block as it printed it
        if line.startswith("servectl-bench: "):
            info("running: " + line.removeprefix("servectl-bench: "))
        elif "Serving Benchmark Result" in line or block["open"]:
            block["open"] = not (line.startswith("=====") and "Result" not in line)
            info(line)

    doc, log = run_bench(tgt, protocol, python=python, on_line=None if as_json else show)
    path = output or Path(f"bench-{doc['model']}-{time.strftime('%Y%m%d-%H%M%S')}.json".replace("/", "_"))
    write_result(path, doc, log)
    if plot is not None:
        from servectl.bench.plot import plot_results

        plot_results(doc, plot)
    if as_json:
        emit_json(doc)
        return
    console.print(results_table(doc))
    info(f"result: {path}   vLLM's own output: {path.with_suffix('.vllm-bench.log')}" + (f"   plot: {plot}" if plot else ""))


def results_table(doc: dict) -> Table:
    t = Table(
        title=f"{doc.get('recipe') or doc['model']}  vLLM {doc.get('vllm_version')}  "
        f"{doc['protocol']['input_len']}+{doc['protocol']['output_len']} tokens, {doc['protocol']['num_prompts']} prompts (ms)"
    )
    for col in ("conc.", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "errors"):
        t.add_column(col, justify="right")
    for r in doc["results"]:
        t.add_row(
            str(r["concurrency"]),
            f"{r['request_throughput']:.2f}",
            f"{r['output_throughput']:.2f}",
            f"{r['ttft_ms']['p50']:.2f}",
            f"{r['ttft_ms']['p99']:.2f}",
            f"{r['tpot_ms']['p50']:.2f}",
            f"{r['tpot_ms']['p99']:.2f}",
            str(r["errors"]),
        )
    return t


def _figure(v) -> str:
    return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


@bench.command("compare")
@click.argument("a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(dir_okay=False, path_type=Path))
@options.JSON("Here: the comparison.")
def bench_compare(a: Path, b: Path, as_json: bool) -> None:
    """Compare two `servectl bench` result files side by side: setup differences, then per
    concurrency level each figure of A and B and B's change."""
    from servectl.bench.protocol import compare
    from servectl.bench.runner import read_result

    diff = compare(read_result(a), read_result(b))
    if as_json:
        emit_json(diff)
        return
    if diff["setup"]:
        setup = Table(title="setup differences")
        for col in ("field", str(a), str(b)):
            setup.add_column(col, overflow="fold")
        for key, pair in diff["setup"].items():
            setup.add_row(key, json.dumps(pair["a"]), json.dumps(pair["b"]))
        console.print(setup)
    t = Table(title=f"A = {a}   B = {b}")
    for col in ("concurrency", "metric", "A", "B", "change"):
        t.add_column(col, justify="right" if col != "metric" else "left")
    for row in diff["rows"]:
        change = "" if row["change"] is None else f"{row['change']:+.1%}"
        style = {True: "green", False: "red"}.get(row["better"])
        t.add_row(
            str(row["concurrency"]),
            f"{row['metric']} {row['unit']}".strip(),
            _figure(row["a"]),
            _figure(row["b"]),
            Text(change, style=style or ""),
        )
    console.print(t)
    for side in ("a", "b"):
        if diff[f"only_in_{side}"]:
            info(f"concurrency only in {side.upper()}: {', '.join(map(str, diff[f'only_in_{side}']))}")
