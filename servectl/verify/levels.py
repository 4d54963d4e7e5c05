"""Check levels: `quick` (servectl.verify.health's set), `full` (quick + the serving gates of
servectl.verify.gates), `soak` (quick + mixed load for a duration, servectl.verify.soak; the gates'
own heavy load is left to `full`, so an hour-long soak is only the soak).

Typical times on the tiny CPU model (2 cores): quick ~2 s; full ~10-30 s (dominated by
max_num_seqs long requests at once); soak = quick + the duration + a warm-up round. On a real model `full` scales
with max_num_seqs x max_model_len: it prefills that many tokens once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import httpx

from servectl import netio
from servectl.verify import gates, soak
from servectl.verify.health import Expectations, api_key_from, expectations_for, run_checks
from servectl.verify.prompts import WEATHER_TOOL
from servectl.verify.report import CheckResult, Report
from servectl.verify.server_facts import discover

Level = Literal["quick", "full", "soak"]
LEVELS: tuple[str, ...] = ("quick", "full", "soak")
FULL_CHECKS = ("concurrency", "context", "tool-stream", "reasoning-leak")
DEFAULT_SOAK_S = 600.0


def _gpu_memory_gib() -> float | None:
    """Memory of this machine's first GPU (None: none): picks vLLM's default max_num_seqs for a
    local server started without the flag."""
    from servectl.hardware.detect import detect

    gpus = detect().gpus
    if gpus and gpus[0].memory_total_mib:
        return gpus[0].memory_total_mib / 1024
    return None


def run_level(
    base_url: str,
    level: Level = "quick",
    *,
    model: str | None = None,
    api_key_env: str | None = None,
    timeout_s: float = 120.0,
    duration_s: float | None = None,
    max_num_seqs: int | None = None,
    on_check: Callable[[CheckResult], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
    expect: Expectations | None = None,
) -> Report:
    """Run a level against `base_url`: the quick checks, then the gates (full) or the load (soak). `expect`: what
    applies, when the caller knows the recipe (else it comes from the catalog by served name).
    Raises UserError when the server cannot be reached at all."""
    report = run_checks(base_url, model=model, api_key_env=api_key_env, timeout_s=timeout_s, on_check=on_check, expect=expect)
    if level == "quick":
        return report
    names = list(FULL_CHECKS) if level == "full" else ["soak"]
    if report.model is None or any(c.name == "models" and c.status == "fail" for c in report.checks):
        for name in names:
            _record(report, CheckResult(name=name, status="skipped", detail="the expected model is not served here"), on_check)
        return report
    api_key = api_key_from(api_key_env)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    expect = expect or expectations_for(report.recipe or report.model)
    base = base_url.rstrip("/")
    with netio.client(timeout_s, headers=headers) as http:
        try:
            facts = discover(http, base, report.model, max_num_seqs=max_num_seqs, gpu_memory_gib=_gpu_memory_gib)
        except Exception as exc:  # not vLLM's endpoints (a proxy in front?): every gate fails with why
            for name in names:
                _record(
                    report,
                    CheckResult(
                        name=name,
                        status="fail",
                        detail=f"cannot read the server's /v1/models and /metrics: {exc.__class__.__name__}: {str(exc)[:160]}",
                    ),
                    on_check,
                )
            return report
        ctx = gates.GateContext(
            base=base,
            model=report.model,
            http=http,
            facts=facts,
            timeout_s=timeout_s,
            tools_tool=WEATHER_TOOL,
            expect_tools=expect.tools,
            expect_reasoning=expect.reasoning,
            headers=headers,
            progress=on_progress,
        )
        steps: list[tuple[str, Callable[[], CheckResult]]] = (
            [
                ("concurrency", lambda: gates.concurrency(ctx)),
                ("context", lambda: gates.context(ctx)),
                ("tool-stream", lambda: gates.tool_stream(ctx)),
                ("reasoning-leak", lambda: gates.reasoning_leak(ctx, expect.prompt)),
            ]
            if level == "full"
            else [("soak", lambda: _soak(ctx, expect, duration_s or DEFAULT_SOAK_S, on_progress))]
        )
        for name, step in steps:
            try:
                result = step()
            except Exception as exc:  # a check that errors is a failed check, with what went wrong
                result = CheckResult(name=name, status="fail", detail=f"{exc.__class__.__name__}: {str(exc)[:200]}")
            _record(report, result, on_check)
    return report


def _record(report: Report, result: CheckResult, on_check) -> None:
    report.checks.append(result)
    if on_check:
        on_check(result)


def _soak(ctx: gates.GateContext, expect, duration_s: float, on_progress) -> CheckResult:
    facts = ctx.facts
    long_prompt = None
    try:  # a quarter of max_model_len, as text the server's tokenizer wrote
        ids = gates.filler_ids(ctx, max(16, (facts.max_model_len or 2048) // 4))
        r = ctx.http.post(ctx.base + "/detokenize", json={"model": ctx.model, "tokens": ids})
        long_prompt = netio.json_of(r)["prompt"] if r.status_code == 200 else None
        long_prompt = long_prompt if isinstance(long_prompt, str) else None
    except (httpx.HTTPError, RuntimeError, KeyError, ValueError, TypeError):  # no /tokenize (not vLLM?): no long kind
        long_prompt = None
    plan = soak.SoakPlan(
        base=ctx.base,
        model=ctx.model,
        duration_s=duration_s,
        workers=max(1, min(soak.MAX_WORKERS, facts.max_num_seqs or soak.MAX_WORKERS)),
        long_prompt=long_prompt,
        tool=WEATHER_TOOL if expect.tools else None,
        timeout_s=ctx.timeout_s,
        headers=ctx.headers,
    )

    def tick(p: dict) -> None:
        if on_progress:
            rss = f", server RSS {p['rss_bytes'] / 2**20:.0f} MiB" if p.get("rss_bytes") else ""
            on_progress(
                f"soak: {p['elapsed_s']:.0f}/{p['duration_s']:.0f} s, {p['requests']} requests, "
                f"{p['errors']} errors, {p['empty']} empty, {p['tokens_per_s']:.0f} tokens/s{rss}"
            )

    return soak.soak_check(plan, facts, on_progress=tick)
