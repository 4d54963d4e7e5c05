"""What a launch reports when it is over: the health checks of a ready server, the summary `up --json` prints,
and for a failed start its log tail and diagnosis (StartFailed, printed by the CLI). Also what `servectl check`
should expect of a deployment servectl started."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from servectl.errors import CheckFailed
from servectl.launch import runners, startup, state
from servectl.launch.record import DeploymentRecord
from servectl.spec.models import LaunchSpec
from servectl.verify.report import Report


class StartFailed(CheckFailed):
    """A server that died or missed its deadline (exit 1), stopped already: its log tail and the diagnosis of
    `servectl diagnose` go with it, for the CLI to print above the error line."""

    def __init__(self, why: str, log_path: Path, log_tail: str, diagnosis: list[str], known: bool, headline: str | None = None):
        hint = f"full log: {log_path}" + ("" if known else f"; `servectl diagnose {shlex.quote(str(log_path))}`")
        super().__init__(why, hint)
        self.log_tail, self.diagnosis, self.headline = log_tail, diagnosis, headline


def diagnosis_lines(log_text: str, spec: LaunchSpec | None = None) -> tuple[list[str], bool]:
    """What `servectl diagnose` would print for this log, with the recipe and GPU profile of the start as hints
    (its parsers, memory layout, GPU count and gfx target); and whether a rule found the cause."""
    from servectl.verify.diagnose import explain, hints_for, text_lines

    hints = None
    if spec is not None:
        profile = spec.gpu_profile
        hints = hints_for(
            log_text,
            recipe=spec.model_recipe,
            gpus=profile.count if profile.vendor != "cpu" else None,
            gfx_target=profile.gfx_target,
        )
    found = explain(log_text, hints)
    return text_lines(found), found.rule is not None


def fail_start(
    runner: runners.Runner,
    launched: runners.Launched,
    spec: LaunchSpec,
    text: str,
    why: str,
    grace_s: float = 5,
    headline: str | None = None,
) -> StartFailed:
    """Stop a failed start and forget it; the StartFailed that carries its log tail and diagnosis (every runtime)."""
    runner.stop(launched, grace_s=grace_s)
    state.remove(spec.name)
    lines, known = diagnosis_lines(text, spec)
    return StartFailed(why, launched.log_path, startup.tail(text), lines, known, headline)


def health_report(url: str, model: str | None, spec: LaunchSpec | None = None) -> Report:
    """The quick checks; for a launch of ours, reasoning and tools are checked exactly where its flags turn their
    parsers on (the recipe's, less what the release lacks, plus the user's; a derived recipe is in no catalog the
    checks could look it up in)."""
    from dataclasses import replace as with_fields

    from servectl.verify.health import Expectations, run_checks
    from servectl.vllmenv import args as va

    expect = None
    if spec is not None:
        flags = va.parse_args(spec.vllm_args)
        expect = with_fields(
            Expectations.from_recipe(spec.model_recipe, served_name=model),
            reasoning=va.get(flags, "--reasoning-parser") is not None,
            tools=va.get(flags, "--tool-call-parser") is not None,
        )
    return run_checks(url, model=model, expect=expect)


def summary(record: DeploymentRecord, result: startup.StartupResult, report: Report | None) -> dict[str, Any]:
    """`up --json` / `demo --json`."""
    r = record
    return {
        "name": r.name,
        "endpoint": r.endpoint,
        "served_model_name": r.served_model_name,
        "model": r.model,
        "runtime": r.runtime,
        "pid": r.pid,
        "container_id": r.container_id,
        "port": r.port,
        "log": r.log_path,
        "startup_s": result.elapsed_s,
        "phases": result.phases,
        "kv_cache_tokens_reported": r.kv_cache_tokens_reported,
        "kv_cache_tokens_predicted": r.kv_cache_tokens_predicted,
        "detached": r.detached,
        "health": None if report is None else report.to_json(),
        "health_passed": None if report is None else report.passed,
    }


def check_expectations(url: str, model: str | None):
    """What `servectl check URL [--model MODEL]` should expect when the catalog cannot say by served name (None: it can).

    `--model` may name a user recipe, a hub repo or a checkpoint directory (the recipe derived from it says which
    parsers run). Without it, a deployment servectl started on this machine at that port says it: the parsers its
    vLLM command line turned on (a derived recipe is in no catalog)."""
    from dataclasses import replace as with_fields
    from urllib.parse import urlsplit

    from servectl.catalog.load import load_catalog
    from servectl.plan.any_model import resolve_model
    from servectl.verify.health import Expectations
    from servectl.vllmenv import args as va

    cat = load_catalog()
    if model is not None:
        if model in cat.models or any(model == r.served_model_name for r in cat.models.values()):
            return None
        from servectl.catalog import user
        from servectl.checkpoint.ref import parse

        if user.find(model, cat) is None and parse(model) is None:
            return None  # a served name the catalog does not know: probe and skip, as before
        return Expectations.from_recipe(resolve_model(model, catalog=cat).recipe)
    try:
        port = urlsplit(url).port or (443 if url.startswith("https") else 80)
    except ValueError:
        return None
    rec = next(
        (r for r in state.list_records() if r.port == port and r.host in ("127.0.0.1", "localhost", "0.0.0.0", "::1")), None
    )
    if rec is None or rec.recipe in cat.models or not rec.argv:
        return None
    words = list(rec.argv)
    flags = va.parse_args(words[words.index(rec.model) + 1 :]) if rec.model in words else []
    base = Expectations(served_name=rec.served_model_name or rec.model, recipe=rec.recipe)
    return with_fields(
        base, reasoning=va.get(flags, "--reasoning-parser") is not None, tools=va.get(flags, "--tool-call-parser") is not None
    )
