"""`servectl calibrate MODEL --log FILE`: a real vLLM start compared with its plan, stored for later plans."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from servectl.cli import options

from servectl.cli.app import console, detected, emit_json
from servectl.plan import service


@click.command("calibrate")
@click.argument("model")
@options.GPU("The one the log was taken on. Default: the profile this machine's GPUs match.")
@click.option(
    "--log", "log_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="vLLM start-up log."
)
@click.option("--host", help="Host the log came from (default: this one); later plans on that host use it.")
@options.JSON("Keys below.")
def calibrate(model: str, gpu: str | None, log_file: Path, host: str | None, as_json: bool) -> None:
    """Compare a real vLLM start with the plan for the same flags and release; store it for later plans (per recipe,
    profile, vLLM release and host; `plan` then says "calibrated from N starts"). `servectl up` does this itself.

    --json keys: recipe, profile, vllm_version, host, overhead_mib, measured_kv_tokens, predicted_kv_tokens,
    measured_available_mib, predicted_available_mib, measured_block_size, predicted_block_size, measured_terms_gib,
    starts, overheads, source, file.
    """
    from servectl.plan.any_model import resolve_model

    rec, path = service.calibrate_from_log(resolve_model(model).recipe, gpu, log_file, host=host, detected=detected(gpu))
    out = {**asdict(rec), "file": str(path)}
    if as_json:
        emit_json(out)
        return
    console.print(
        f"{rec.recipe} on {rec.profile}, vLLM {rec.vllm_version or '?'}, host {rec.host}: KV cache size measured "
        f"{rec.measured_kv_tokens if rec.measured_kv_tokens is not None else '?'} vs predicted {rec.predicted_kv_tokens} tokens",
        highlight=False,
    )
    console.print(
        f"stored ({rec.starts} start{'s' if rec.starts != 1 else ''} for this key): {rec.overhead_mib:+.1f} MiB non-KV "
        f"overhead, block size {rec.measured_block_size} (rules: {rec.predicted_block_size}) -> {path}",
        highlight=False,
    )
