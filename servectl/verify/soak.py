"""The `soak` level of `servectl check`: mixed load for a while, watching what only time shows.

Workers send a fixed rotation of request kinds (short chat without thinking, chat with thinking,
a streamed chat, a long prompt at a quarter of max_model_len, and a tool call where the server
parses them) until the duration is up. Reported: error rate, empty-reply rate, output throughput
of the first and last quarter (drift), and the server's memory (RSS of its process tree; VRAM
where NVML sees it) after a warm-up round and at the end.

Fails on any error, any empty reply, or memory that keeps growing: growth over the second half
of the run beyond GROWTH_BOUND of the mid-run figure (or GROWTH_FLOOR_MIB, whichever is larger).
The first half absorbs what a fresh server allocates once (allocator pools, caches sized by the
batch): on the tiny CPU model the workers' RSS rose ~300 MiB in the first 30 s of load and
then stayed within ~40 MiB. Throughput drift is reported, not judged: on a shared host other
load moves it as much as the server does.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from dataclasses import dataclass

import httpx

from servectl import netio
from servectl.errors import UserError
from servectl.verify.report import CheckResult
from servectl.verify.proctree import tree_rss, tree_vram
from servectl.verify.prompts import NO_THINKING, WEATHER_PROMPT, reasoning_text
from servectl.verify.server_facts import ServerFacts

# memory may grow over the second half by this share of the mid-run figure, or GROWTH_FLOOR_MIB if larger
GROWTH_BOUND = 0.10
GROWTH_FLOOR_MIB = 256
MAX_WORKERS = 4

MAX_DURATION_S = 7 * 86400
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """'30s', '10m', '1.5h', '90' (seconds) -> seconds; UserError on anything else."""
    m = _DURATION.match(text or "")
    if not m:
        raise UserError(f"--duration {text!r} is not a duration", "write e.g. 30s, 10m or 1h")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if value <= 0:
        raise UserError(f"--duration {text!r} must be more than zero", "write e.g. 30s, 10m or 1h")
    if not math.isfinite(value) or value > MAX_DURATION_S:
        raise UserError(f"--duration {text!r} is longer than a week", "write e.g. 30s, 10m or 1h")
    return value


@dataclass
class Outcome:
    kind: str
    ok: bool
    empty: bool = False
    tokens: int = 0
    end: float = 0.0
    error: str | None = None


@dataclass
class SoakPlan:
    base: str
    model: str
    duration_s: float
    workers: int
    long_prompt: str | None  # text of ~25 % of max_model_len
    tool: Mapping[str, Any] | None
    timeout_s: float = 120.0
    headers: dict[str, str] | None = None  # the API key, when the server wants one


def _bodies(plan: SoakPlan) -> dict[str, dict]:
    chat = {"model": plan.model, "max_tokens": 128, "temperature": 0.7}
    out = {
        "chat": {**chat, "messages": [{"role": "user", "content": "Who are you?"}], **NO_THINKING},
        "thinking": {**chat, "max_tokens": 512, "messages": [{"role": "user", "content": "Who are you?"}]},
        "stream": {**chat, "messages": [{"role": "user", "content": "Tell me about yourself."}], "stream": True, **NO_THINKING},
    }
    if plan.long_prompt:
        out["long"] = {**chat, "messages": [{"role": "user", "content": plan.long_prompt}], **NO_THINKING}
    if plan.tool:
        out["tool"] = {
            **chat,
            "messages": [{"role": "user", "content": WEATHER_PROMPT}],
            "tools": [plan.tool],
            "tool_choice": "auto",
            **NO_THINKING,
        }
    return out


async def _send(client: httpx.AsyncClient, url: str, kind: str, body: dict) -> Outcome:
    try:
        if body.get("stream"):
            text, tokens = [], 0
            async with client.stream("POST", url, json={**body, "stream_options": {"include_usage": True}}) as r:
                if r.status_code != 200:
                    return Outcome(kind, False, error=f"HTTP {r.status_code}", end=time.monotonic())
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        event = netio.loads_strict(line[6:])
                        tokens = (event.get("usage") or {}).get("completion_tokens", tokens)
                        for c in event.get("choices") or []:
                            d = c.get("delta") or {}
                            text.append((d.get("content") or "") + reasoning_text(d))
            return Outcome(kind, True, empty=not "".join(text).strip(), tokens=tokens, end=time.monotonic())
        r = await client.post(url, json=body)
        if r.status_code != 200:
            return Outcome(kind, False, error=f"HTTP {r.status_code}: {r.text[:120]}", end=time.monotonic())
        data = netio.json_of(r)
        msg = data["choices"][0]["message"]
        said = (msg.get("content") or "") + reasoning_text(msg)
        empty = not said.strip() and not msg.get("tool_calls")
        return Outcome(
            kind, True, empty=empty, tokens=(data.get("usage") or {}).get("completion_tokens", 0), end=time.monotonic()
        )
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return Outcome(kind, False, error=f"{exc.__class__.__name__}: {str(exc)[:120]}", end=time.monotonic())


def _throughput(outcomes: list[Outcome], t0: float, t1: float) -> float | None:
    if t1 <= t0:
        return None
    return sum(o.tokens for o in outcomes if t0 <= o.end < t1) / (t1 - t0)


def run_soak(
    plan: SoakPlan, pid: int | None, on_progress: Callable[[dict], None] | None = None, progress_every_s: float = 5.0
) -> dict:
    """Run the load; returns the figures (see the module doc). pid: the server's process, when local."""
    bodies = _bodies(plan)
    kinds = list(bodies)
    url = plan.base + "/v1/chat/completions"

    async def run() -> tuple[list[Outcome], float, float, dict]:
        async with netio.async_client(plan.timeout_s, headers=plan.headers, connections=plan.workers + 2) as client:
            # warm-up: one of each kind, so first-use allocations are not counted as growth
            warm = await asyncio.gather(*(_send(client, url, k, bodies[k]) for k in kinds))
            memory = {"rss_start": tree_rss(pid) if pid else None, "vram_start": tree_vram(pid) if pid else None}
            outcomes: list[Outcome] = []
            start = time.monotonic()
            deadline = start + plan.duration_s

            async def worker(i: int) -> None:
                n = i
                while time.monotonic() < deadline:
                    kind = kinds[n % len(kinds)]
                    outcomes.append(await _send(client, url, kind, bodies[kind]))
                    n += 1

            async def progress() -> None:
                mid = start + plan.duration_s / 2
                while time.monotonic() < deadline:
                    await asyncio.sleep(
                        min(
                            progress_every_s,
                            max(0.0, mid - time.monotonic()) or progress_every_s,
                            max(0.0, deadline - time.monotonic()),
                        )
                    )
                    now = time.monotonic()
                    rss = tree_rss(pid) if pid else None
                    if "rss_mid" not in memory and now >= mid:
                        memory["rss_mid"], memory["vram_mid"] = rss, tree_vram(pid) if pid else None
                    if on_progress:
                        on_progress(
                            {
                                "elapsed_s": round(now - start),
                                "duration_s": plan.duration_s,
                                "requests": len(outcomes),
                                "errors": sum(not o.ok for o in outcomes),
                                "empty": sum(o.empty for o in outcomes),
                                "tokens_per_s": round(_throughput(outcomes, max(start, now - 30), now) or 0.0, 1),
                                "rss_bytes": rss,
                            }
                        )

            ticker = asyncio.create_task(progress())
            await asyncio.gather(*(worker(i) for i in range(plan.workers)))
            ticker.cancel()
            end = time.monotonic()
            return warm + outcomes, start, end, memory

    outcomes, start, end, memory = asyncio.run(run())
    warm = len(kinds)
    measured = outcomes[warm:]
    total = len(outcomes)
    quarter = (end - start) / 4
    first, last = _throughput(measured, start, start + quarter), _throughput(measured, end - quarter, end + 1)
    errors = [o for o in outcomes if not o.ok]
    figures = {
        "duration_s": round(end - start, 1),
        "workers": plan.workers,
        "kinds": kinds,
        "requests": total,
        "errors": len(errors),
        "error_rate": round(len(errors) / max(1, len(outcomes)), 4),
        "first_error": errors[0].error if errors else None,
        "empty": sum(o.empty for o in outcomes),
        "empty_rate": round(sum(o.empty for o in outcomes) / max(1, len(outcomes)), 4),
        "output_tokens": sum(o.tokens for o in measured),
        "tokens_per_s_first_quarter": round(first, 1) if first is not None else None,
        "tokens_per_s_last_quarter": round(last, 1) if last is not None else None,
        "throughput_drift": round(last / first - 1, 3) if first and last is not None else None,
        "rss_start_bytes": memory["rss_start"],
        "rss_mid_bytes": memory.get("rss_mid"),
        "rss_end_bytes": tree_rss(pid) if pid else None,
        "vram_start_bytes": memory["vram_start"],
        "vram_mid_bytes": memory.get("vram_mid"),
        "vram_end_bytes": tree_vram(pid) if pid else None,
        "growth_bound": f"second half: {GROWTH_BOUND:.0%} of the mid-run figure or {GROWTH_FLOOR_MIB} MiB, whichever is larger",
    }
    return figures


def growth_problem(mid: int | None, end: int | None, what: str) -> str | None:
    """The stated bound on memory growth over the second half of the run, or None when within it."""
    if not mid or end is None:
        return None
    allowed = max(mid * GROWTH_BOUND, GROWTH_FLOOR_MIB * 2**20)
    if end - mid > allowed:
        return (
            f"{what} kept growing: +{(end - mid) / 2**20:.0f} MiB over the second half "
            f"({mid / 2**20:.0f} -> {end / 2**20:.0f} MiB), over the bound of {allowed / 2**20:.0f} MiB"
        )
    return None


def soak_check(plan: SoakPlan, facts: ServerFacts, on_progress=None) -> CheckResult:
    figures = run_soak(plan, facts.pid, on_progress)
    problems = []
    if figures["errors"]:
        problems.append(f"{figures['errors']} of {figures['requests']} requests failed ({figures['first_error']})")
    if figures["empty"]:
        problems.append(f"{figures['empty']} empty replies")
    for key, what in (("rss", "server RSS"), ("vram", "server VRAM")):
        p = growth_problem(figures[f"{key}_mid_bytes"], figures[f"{key}_end_bytes"], what)
        if p:
            problems.append(p)
    mem = (
        "RSS not measured (server not on this machine)"
        if figures["rss_start_bytes"] is None
        else f"RSS {figures['rss_start_bytes'] / 2**20:.0f} -> {figures['rss_end_bytes'] / 2**20:.0f} MiB "
        f"(growth bound, {figures['growth_bound']})"
    )
    drift = figures["throughput_drift"]
    summary = (
        f"{figures['requests']} requests in {figures['duration_s']:.0f} s, {figures['errors']} errors, "
        f"{figures['empty']} empty, {mem}" + (f", throughput drift {drift:+.0%}" if drift is not None else "")
    )
    if problems:
        return CheckResult(name="soak", status="fail", detail="; ".join(problems) + f" ({summary})", figures=figures)
    return CheckResult(name="soak", status="pass", detail=summary, figures=figures)
