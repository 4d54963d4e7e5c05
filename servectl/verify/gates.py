"""The `full` level of `servectl check`: serving gates beyond one request.

concurrency     the KV cache's capacity (vLLM's own maximum concurrency at max_model_len) against the
                concurrency the flags promise (max_num_seqs); then max_num_seqs long requests at once,
                preemptions read from vLLM's counter
context         prompts at 25/50/75/90 % of max_model_len, lengths measured with the server's /tokenize;
                each must be served whole: usage and vLLM's per-request token histograms equal the count
tool-stream     a streamed tool call, reassembled from its deltas, equals the non-streamed one
reasoning-leak  thinking on: no reasoning markup in content; thinking off: no reasoning at all

Every verdict comes from figures vLLM reports exactly (token counts of the requests it served, /tokenize,
its counters and cache_config_info), never from gauges sampled while requests run: those depend on the
host's speed (a busy host's client catches the server at other moments). vLLM records a finished
request's counters just after its last chunk is sent, so a gate waits for the counter of finished
requests to reach its own requests before it compares.

Requests go through servectl.netio's bounded clients (a total deadline per request, a body limit):
the OpenAI client would hide the raw deltas and the vLLM-only fields (ignore_eos, min_tokens) these
checks need.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from typing import Any
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import httpx

from servectl import netio
from servectl.verify.prompts import NO_THINKING, WEATHER_PROMPT, reasoning_text
from servectl.verify.report import CheckResult
from servectl.verify.server_facts import ServerFacts, read_metrics

THINK_MARKUP = ("<think>", "</think>")
CONTEXT_RUNGS = (0.25, 0.50, 0.75, 0.90)
# filler for long prompts: plain words every tokenizer knows; its token ids are taken from /tokenize
FILLER = (
    "The weather in the city was sunny and the people went out to see the water. "
    "They could find a new place to live after the long work of the year. "
) * 8
# how long vLLM may take to count requests whose answers the client already has (it records them in
# the same loop iteration; the bound only stops a server that never counts from stalling the check)
COUNT_WAIT_S = 30.0


@dataclass
class GateContext:
    base: str
    model: str
    http: httpx.Client
    facts: ServerFacts
    timeout_s: float
    tools_tool: Mapping[str, Any]  # the tool definition the quick `tools` check uses
    expect_tools: bool | None
    expect_reasoning: bool | None
    headers: dict[str, str] | None = None  # the API key, for the asyncio clients
    progress: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        if self.progress:
            self.progress(text)


# --------------------------------------------------------------------------- token-exact prompts


def tokenize(ctx: GateContext, text: str) -> list[int]:
    r = ctx.http.post(ctx.base + "/tokenize", json={"model": ctx.model, "prompt": text, "add_special_tokens": False})
    r.raise_for_status()
    tokens = netio.json_of(r).get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise RuntimeError("/tokenize returned no list of token ids")
    return tokens


def filler_ids(ctx: GateContext, count: int) -> list[int]:
    """At least `count` token ids of plain text, from the server's own tokenizer."""
    ids = tokenize(ctx, FILLER)
    if not ids:
        raise RuntimeError("/tokenize returned no tokens")
    return (ids * (count // len(ids) + 1))[:count]


def metrics_now(ctx: GateContext) -> dict:
    return read_metrics(ctx.http.get(ctx.base + "/metrics").text)


def served_since(ctx: GateContext, before: dict, requests: int) -> dict | None:
    """What vLLM counted since `before` once it has counted `requests` more finished requests: finished
    requests, their prompt and generated tokens (vllm:request_prompt_tokens / request_generation_tokens,
    observed once per finished request), preemptions. None when the server keeps no such counters."""
    if "finished_requests" not in before:
        return None
    deadline = time.monotonic() + COUNT_WAIT_S
    while True:
        now = metrics_now(ctx)
        delta = {
            k: now.get(k, 0.0) - before.get(k, 0.0)
            for k in ("finished_requests", "finished_prompt_tokens", "finished_generation_tokens", "preemptions")
        }
        if delta["finished_requests"] >= requests or time.monotonic() > deadline:
            return {k: int(v) for k, v in delta.items()}
        time.sleep(0.05)


def count_problems(counted: dict | None, requests: int, prompt_tokens: int, generated: int) -> list[str]:
    """Whether vLLM's own counters say it served what the replies say: exactly when no other request
    finished meanwhile, at least that much when other traffic did."""
    if counted is None:
        return []
    if counted["finished_requests"] < requests:
        return [f"vLLM counted {counted['finished_requests']} of {requests} finished requests"]
    alone = counted["finished_requests"] == requests
    problems = []
    for key, want, what in (
        ("finished_prompt_tokens", prompt_tokens, "prompt"),
        ("finished_generation_tokens", generated, "generated"),
    ):
        got = counted[key]
        if (got != want) if alone else (got < want):
            problems.append(f"vLLM counted {got} {what} tokens for requests whose replies say {want}")
    return problems


# --------------------------------------------------------------------------- concurrency


def fixes_for(f: ServerFacts, promise: int, preempted: bool = False) -> list[str]:
    """Flags that make the KV cache hold `promise` requests: fewer sequences, a shorter context
    (vLLM's figure scales with 1/max_model_len; rounded down to whole KV blocks), or more KV memory
    (linear in the bytes; 5 % over for block rounding)."""
    cap = f.max_concurrency or 0.0
    if preempted and cap >= promise:
        cap = promise - 1  # vLLM's figure says it fits but the run preempted: ask for less than was tried
    fixes = [f"--max-num-seqs {max(1, math.floor(cap))}"]
    if f.max_model_len and cap > 0:
        block = f.block_size or 16
        fixes.append(f"--max-model-len {max(block, int(f.max_model_len * cap / promise) // block * block)}")
    if f.kv_cache_memory_bytes and cap > 0:
        fixes.append(f"--kv-cache-memory-bytes {math.ceil(f.kv_cache_memory_bytes * promise / cap * 1.05 / 2**20)}M")
    elif f.gpu_memory_utilization and cap > 0:
        fixes.append(
            f"more KV memory: {promise / cap:.1f}x the KV cache (raise --gpu-memory-utilization "
            f"from {f.gpu_memory_utilization:g}, or set --kv-cache-memory-bytes)"
        )
    return fixes


async def _one_long(client: httpx.AsyncClient, base: str, model: str, prompt: list[int], out_tokens: int) -> dict:
    try:
        r = await client.post(
            base + "/v1/completions",
            json={
                "model": model,
                "prompt": prompt,
                "max_tokens": out_tokens,
                "min_tokens": out_tokens,
                "ignore_eos": True,
                "temperature": 0,
            },
        )
        if r.status_code != 200:
            return {"error": f"HTTP {r.status_code}: {r.text[:160]}"}
        body = netio.json_of(r)
        return {"text": body["choices"][0].get("text") or "", "usage": body.get("usage") or {}}
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return {"error": f"{exc.__class__.__name__}: {exc}"}


def concurrency_load(ctx: GateContext, n: int, prompt_len: int, out_tokens: int, seed: int = 0) -> dict:
    """n requests at once, each prompt_len prompt tokens (ids of the server's tokenizer, shuffled per
    request so prefix caching shares nothing) + out_tokens generated; returns the figures, all of them
    counts: replies, their usage, and vLLM's counters (preemptions, tokens of finished requests)."""
    base_ids = filler_ids(ctx, prompt_len)
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        ids = base_ids[:]
        rng.shuffle(ids)
        prompts.append(ids)
    before = metrics_now(ctx)

    async def run() -> list[dict]:
        async with netio.async_client(ctx.timeout_s, headers=ctx.headers, connections=n + 2) as client:
            return await asyncio.gather(*(_one_long(client, ctx.base, ctx.model, p, out_tokens) for p in prompts))

    start = time.monotonic()
    results = asyncio.run(run())
    seconds = time.monotonic() - start
    done = [r for r in results if "error" not in r]
    counted = served_since(ctx, before, len(done))
    preemptions = counted["preemptions"] if counted else int(metrics_now(ctx)["preemptions"] - before["preemptions"])
    errors = [r["error"] for r in results if "error" in r]
    empty = sum(1 for r in done if not (r["text"] and r["usage"].get("completion_tokens")))
    usage_prompt = sum(int(r["usage"].get("prompt_tokens") or 0) for r in done)
    usage_generated = sum(int(r["usage"].get("completion_tokens") or 0) for r in done)
    short = sum(1 for r in done if r["usage"].get("completion_tokens") not in (None, out_tokens))
    return {
        "requests": n,
        "prompt_tokens": prompt_len,
        "output_tokens": out_tokens,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "empty": empty,
        "short_replies": short,
        "preemptions": preemptions,
        "usage_prompt_tokens": usage_prompt,
        "usage_generated_tokens": usage_generated,
        "vllm_counted": counted,
        "count_problems": count_problems(counted, len(done), usage_prompt, usage_generated),
        "seconds": round(seconds, 1),
    }


def concurrency(ctx: GateContext) -> CheckResult:
    f = ctx.facts
    if not f.max_model_len or f.max_concurrency is None:
        return CheckResult(
            name="concurrency",
            status="fail",
            detail="the server reports no max_model_len or KV cache size (/v1/models, vllm:cache_config_info)",
        )
    if f.max_num_seqs is None or f.max_num_seqs < 1:
        return CheckResult(
            name="concurrency",
            status="skipped",
            detail=f"KV cache holds {f.max_concurrency:.1f} requests of {f.max_model_len} tokens; the "
            "promised concurrency is unknown (server not on this machine): pass --max-num-seqs N",
        )
    n = f.max_num_seqs
    figures: dict[str, Any] = {
        "max_concurrency": round(f.max_concurrency, 2),
        "max_num_seqs": n,
        "max_num_seqs_source": f.max_num_seqs_source,
        "max_model_len": f.max_model_len,
        "kv_cache_tokens": f.kv_cache_tokens,
    }
    # long prompts near max_model_len, and output long enough to need new KV blocks while decoding
    # (a request that never grows is never preempted)
    out_tokens = min(512, max(16, f.max_model_len // 5))
    prompt_len = max(1, int(f.max_model_len * 0.95) - out_tokens)
    short = f.max_concurrency < n
    # a cache already short of the promise needs no full promise to show it: twice what it holds (+1)
    # overflows it as surely, and keeps the run short when a default such as 128 or 1024 is promised
    sent = min(n, 2 * math.floor(f.max_concurrency) + 1) if short else n
    ctx.say(f"concurrency: {sent} requests of {prompt_len}+{out_tokens} tokens at once")
    load = concurrency_load(ctx, sent, prompt_len, out_tokens)
    figures.update(load)
    problems = []
    if short:
        problems.append(
            f"KV cache holds {f.max_concurrency:.1f} requests of {f.max_model_len} tokens "
            f"(vLLM's maximum concurrency) but the flags promise {n} ({f.max_num_seqs_source})"
        )
    if load["preemptions"]:
        problems.append(f"{load['preemptions']} preemptions with {sent} requests of {prompt_len + out_tokens} tokens at once")
    if load["errors"]:
        problems.append(f"{load['errors']} of {sent} requests failed ({load['first_error']})")
    if load["empty"]:
        problems.append(f"{load['empty']} of {sent} replies empty")
    if load["short_replies"]:
        problems.append(f"{load['short_replies']} of {sent} replies shorter than the {out_tokens} tokens asked for")
    problems += load["count_problems"]
    if problems:
        fix = ""
        if short or load["preemptions"]:
            figures["fixes"] = fixes_for(f, n, preempted=bool(load["preemptions"]))
            fix = "; fix: " + " or ".join(figures["fixes"])
        return CheckResult(name="concurrency", status="fail", detail="; ".join(problems) + fix, figures=figures)
    return CheckResult(
        name="concurrency",
        status="pass",
        detail=f"KV cache holds {f.max_concurrency:.1f} x {f.max_model_len} tokens >= max_num_seqs {n}; "
        f"{n} requests of {prompt_len + out_tokens} tokens completed, no preemption "
        f"({load['seconds']:.0f} s)",
        figures=figures,
    )


# --------------------------------------------------------------------------- context ladder


def _ladder_request(ctx: GateContext, text: str, out_tokens: int) -> dict:
    """One streamed completion, usage included: usage + the text."""
    usage: dict = {}
    text_out = []
    with ctx.http.stream(
        "POST",
        ctx.base + "/v1/completions",
        json={
            "model": ctx.model,
            "prompt": text,
            "max_tokens": out_tokens,
            "min_tokens": out_tokens,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.read().decode(errors='replace')[:160]}")
        for event in sse_events(r.iter_lines()):
            if isinstance(event.get("usage"), dict):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                if isinstance(choice, dict):
                    text_out.append(str(choice.get("text") or ""))
    return {**usage, "text": "".join(text_out)}


def sse_events(lines) -> Iterator[dict]:
    """The JSON events of a server-sent event stream (`data: {...}` lines; `[DONE]` and other lines skipped)."""
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = netio.loads_strict(line[6:])
        if isinstance(event, dict):
            yield event


def context(ctx: GateContext) -> CheckResult:
    f = ctx.facts
    if not f.max_model_len:
        return CheckResult(name="context", status="fail", detail="/v1/models reports no max_model_len")
    out_tokens = max(16, min(128, f.max_model_len // 16))
    ids = filler_ids(ctx, int(f.max_model_len * max(CONTEXT_RUNGS)))
    rungs = []
    problems = []
    exact = True
    for share in CONTEXT_RUNGS:
        target = max(1, min(int(f.max_model_len * share), f.max_model_len - out_tokens - 8))
        r = ctx.http.post(ctx.base + "/detokenize", json={"model": ctx.model, "tokens": ids[:target]})
        r.raise_for_status()
        text = netio.json_of(r)["prompt"]
        measured = len(tokenize(ctx, text))  # the server's own count of what it will be sent
        ctx.say(f"context: {share:.0%} of {f.max_model_len} = {measured} tokens")
        before = metrics_now(ctx)
        try:
            usage = _ladder_request(ctx, text, out_tokens)
        except Exception as exc:
            problems.append(f"{share:.0%} ({measured} tokens) failed: {str(exc)[:160]}")
            rungs.append({"share": share, "prompt_tokens": measured, "error": str(exc)[:160]})
            continue
        prompt_used, generated = usage.get("prompt_tokens"), usage.get("completion_tokens")
        counted = served_since(ctx, before, 1)
        rung = {
            "share": share,
            "prompt_tokens": measured,
            "usage_prompt_tokens": prompt_used,
            "completion_tokens": generated,
            "vllm_counted": counted,
        }
        rungs.append(rung)
        if counted is None or counted["finished_requests"] != 1:
            exact = False
        # vLLM may add special tokens (BOS) that /tokenize with add_special_tokens=False leaves out
        extra = (prompt_used if isinstance(prompt_used, int) else 0) - measured
        if not 0 <= extra <= 2:
            problems.append(f"{share:.0%}: usage.prompt_tokens {prompt_used} but /tokenize counted {measured}")
        if generated != out_tokens or not usage.get("text"):
            problems.append(f"{share:.0%}: {generated} tokens generated of the {out_tokens} asked for (EOS ignored)")
        problems += [
            f"{share:.0%}: {p}"
            for p in count_problems(
                counted, 1, prompt_used if isinstance(prompt_used, int) else 0, generated if isinstance(generated, int) else 0
            )
        ]
    figures = {
        "max_model_len": f.max_model_len,
        "rungs": rungs,
        "counters": "exact" if exact else "at least (other traffic, or none kept)",
        "needle": "not claimed by the recipe",
    }
    if problems:
        return CheckResult(name="context", status="fail", detail="; ".join(problems), figures=figures)
    counted_note = "vLLM's counters agree exactly" if exact else "vLLM's counters agree (other traffic ran too)"
    return CheckResult(
        name="context",
        status="pass",
        detail=f"{', '.join(str(r['prompt_tokens']) for r in rungs)} prompt tokens "
        f"(25-90 % of {f.max_model_len}) served whole: usage matches /tokenize, "
        f"{out_tokens} tokens generated each, {counted_note}",
        figures=figures,
    )


# --------------------------------------------------------------------------- tool-stream


def reassemble_tool_calls(deltas: list[dict]) -> list[dict]:
    """Join streamed `delta.tool_calls` by index: id, type and name from whichever delta carries
    them, arguments concatenated in order (the OpenAI streaming contract)."""
    calls: dict[int, dict] = {}
    for d in deltas:
        call = calls.setdefault(d.get("index", 0), {"id": None, "name": None, "arguments": ""})
        call["id"] = call["id"] or d.get("id")
        fn = d.get("function") or {}
        call["name"] = call["name"] or fn.get("name")
        call["arguments"] += fn.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def _chat_stream(ctx: GateContext, body: dict) -> dict:
    """A streamed chat: content, reasoning and tool-call deltas collected."""
    out: dict[str, Any] = {"content": "", "reasoning": "", "tool_deltas": [], "chunks": 0, "finish_reason": None}
    with ctx.http.stream("POST", ctx.base + "/v1/chat/completions", json={**body, "stream": True}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.read().decode(errors='replace')[:160]}")
        for event in sse_events(r.iter_lines()):
            for choice in event.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta") or {}
                out["chunks"] += 1
                out["content"] += delta.get("content") or ""
                out["reasoning"] += reasoning_text(delta)
                out["tool_deltas"] += delta.get("tool_calls") or []
                out["finish_reason"] = choice.get("finish_reason") or out["finish_reason"]
    return out


def _chat(ctx: GateContext, body: dict) -> dict:
    r = ctx.http.post(ctx.base + "/v1/chat/completions", json=body)
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:160]}")
    message = netio.json_of(r)["choices"][0]["message"]
    if not isinstance(message, dict):
        raise RuntimeError("the reply carries no message")
    return message


def tool_stream(ctx: GateContext) -> CheckResult:
    if ctx.expect_tools is False:
        return CheckResult(name="tool-stream", status="skipped", detail="the recipe enables no tool-call parser")
    body = {
        "model": ctx.model,
        "messages": [{"role": "user", "content": WEATHER_PROMPT}],
        "tools": [ctx.tools_tool],
        "tool_choice": "auto",
        "max_tokens": 256,
        "temperature": 0,
        **NO_THINKING,
    }
    try:
        plain = _chat(ctx, body)
    except RuntimeError as exc:
        if ctx.expect_tools is None:
            return CheckResult(name="tool-stream", status="skipped", detail=f"tool calling not enabled ({str(exc)[:80]})")
        raise
    plain_calls = plain.get("tool_calls") or []
    if not plain_calls:
        status = "skipped" if ctx.expect_tools is None else "fail"
        return CheckResult(name="tool-stream", status=status, detail="no tool call in the non-streamed reply to compare with")
    streamed = _chat_stream(ctx, body)
    calls = reassemble_tool_calls(streamed["tool_deltas"])
    figures = {
        "chunks": streamed["chunks"],
        "tool_call_deltas": len(streamed["tool_deltas"]),
        "finish_reason": streamed["finish_reason"],
    }
    if not calls:
        return CheckResult(
            name="tool-stream",
            status="fail",
            detail=f"the stream carried no tool call (content {streamed['content'][:80]!r})",
            figures=figures,
        )
    want = plain_calls[0]["function"]
    got = calls[0]
    try:
        got_args = json.loads(got["arguments"] or "{}")
    except json.JSONDecodeError:
        return CheckResult(
            name="tool-stream",
            status="fail",
            detail=f"streamed arguments do not parse as JSON: {got['arguments'][:120]!r}",
            figures=figures,
        )
    want_args = json.loads(want.get("arguments") or "{}")
    if got["name"] != want["name"] or got_args != want_args:
        return CheckResult(
            name="tool-stream",
            status="fail",
            detail=f"streamed {got['name']}({got_args}) differs from non-streamed {want['name']}({want_args})",
            figures=figures,
        )
    if not got["id"]:
        return CheckResult(name="tool-stream", status="fail", detail="the streamed tool call has no id", figures=figures)
    return CheckResult(
        name="tool-stream",
        status="pass",
        detail=f"{got['name']}({got_args}) from {len(streamed['tool_deltas'])} deltas equals the non-streamed call",
        figures=figures,
    )


# --------------------------------------------------------------------------- reasoning-leak


def _markup_in(text: str) -> list[str]:
    return [m for m in THINK_MARKUP if m in (text or "")]


def reasoning_leak(ctx: GateContext, prompt: str) -> CheckResult:
    if ctx.expect_reasoning is False:
        return CheckResult(name="reasoning-leak", status="skipped", detail="the recipe runs no reasoning parser")
    base = {"model": ctx.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1024, "temperature": 0}
    problems = []
    figures: dict = {}
    for label, body in (("thinking on", base), ("thinking off", {**base, **NO_THINKING})):
        msg = _chat(ctx, body)
        plain = {"content": msg.get("content") or "", "reasoning": reasoning_text(msg)}
        streamed = _chat_stream(ctx, body)
        for how, reply in (("", plain), (" (streamed)", streamed)):
            leaked = _markup_in(reply["content"])
            if leaked:
                problems.append(f"{label}{how}: {' '.join(leaked)} in content")
            if label == "thinking off" and reply["reasoning"]:
                problems.append(f"{label}{how}: reasoning returned ({len(reply['reasoning'])} characters)")
            if label == "thinking on" and not reply["reasoning"] and ctx.expect_reasoning:
                problems.append(f"{label}{how}: no reasoning split off")
        figures[label.replace(" ", "_")] = {
            "reasoning_chars": len(plain["reasoning"]),
            "content_chars": len(plain["content"]),
            "streamed_reasoning_chars": len(streamed["reasoning"]),
        }
    if problems:
        return CheckResult(name="reasoning-leak", status="fail", detail="; ".join(problems), figures=figures)
    return CheckResult(
        name="reasoning-leak",
        status="pass",
        detail="thinking on: reasoning split off, no markup in content; thinking off: no reasoning (plain and streamed)",
        figures=figures,
    )
