"""Prove a served model is healthy and answering sensibly: probes against a live endpoint -> Report.

/health alone is not trusted: it answers 200 while generation is broken (the first request can
crash the engine) and from a leftover server on the same port. So the checks also read
/v1/models (the expected served name and its `root`), generate (and judge the text with
servectl.verify.sanity), exercise the reasoning and tool parsers the recipe turns on, send an image to
multimodal recipes, time a stream, and read /metrics with prometheus_client.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx

from servectl import netio
from servectl.console import register_secret
from servectl.errors import UserError
from servectl.verify.sanity import assess
from servectl.catalog.recipe import ModelRecipe
from servectl.verify.prompts import NO_THINKING, WEATHER_PROMPT, WEATHER_TOOL, reasoning_text
from servectl.verify.report import CheckResult, Report

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam


@dataclass(frozen=True)
class Expectations:
    """What applies to this endpoint; None means 'unknown: probe and skip rather than fail'."""

    served_name: str | None = None
    root: str | None = None
    reasoning: bool | None = None
    tools: bool | None = None
    vision: bool = False
    prompt: str = "Who are you?"
    recipe: str | None = None

    @classmethod
    def from_recipe(cls, recipe: ModelRecipe, served_name: str | None = None, root: str | None = None) -> "Expectations":
        return cls(
            served_name=served_name or recipe.served_model_name,
            root=root,
            reasoning=recipe.parsers.reasoning is not None,
            tools=recipe.parsers.tool_call is not None,
            vision="image" in recipe.multimodal.modalities and recipe.multimodal.limits.get("image", 1) > 0,
            prompt=recipe.smoke_test if "image" not in recipe.smoke_test.lower() else "Who are you?",
            recipe=recipe.name,
        )


def expectations_for(model: str | None, catalog=None) -> Expectations:
    """Expectations from the catalog recipe whose name or served name is `model`, else unknown."""
    if model is None:
        return Expectations()
    if catalog is None:
        from servectl.catalog.load import load_catalog

        catalog = load_catalog()
    for recipe in catalog.models.values():
        if model in (recipe.name, recipe.served_model_name):
            return Expectations.from_recipe(recipe, served_name=recipe.served_model_name if model == recipe.name else model)
    return Expectations(served_name=model)


def tiny_png(size: int = 32) -> bytes:
    """A real PNG (red square on white) made with zlib + struct: no imaging library needed."""
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type none
        for x in range(size):
            inside = size // 4 <= x < 3 * size // 4 and size // 4 <= y < 3 * size // 4
            row += bytes((220, 30, 30) if inside else (255, 255, 255))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def _reasoning_of(message) -> str | None:
    # the OpenAI client keeps fields it does not model (vLLM's) in model_extra
    extra = getattr(message, "model_extra", None) or {}
    return reasoning_text(extra) or getattr(message, "reasoning_content", None)


class _Checks:
    def __init__(self, base_url: str, api_key: str | None, expect: Expectations, timeout_s: float):
        import openai

        self.base = base_url.rstrip("/")
        self.expect = expect
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # every request, ours and the OpenAI client's, within the deadline and the body limit (servectl.netio)
        self.http = netio.client(timeout_s, headers=headers)
        # openai takes an httpx.Client at run time ("legacy" httpx); its annotation names only its own httpx2
        self.client = openai.OpenAI(
            base_url=self.base + "/v1",
            api_key=api_key or "none",
            timeout=timeout_s,
            max_retries=0,
            http_client=cast(Any, netio.client(timeout_s)),
        )
        self.model: str | None = expect.served_name

    @property
    def served(self) -> str:
        """The model the requests name: the models step found it (the later steps run only when it did)."""
        assert self.model is not None
        return self.model

    def health(self) -> CheckResult:
        r = self.http.get(self.base + "/health")
        ok = r.status_code == 200
        return CheckResult(name="health", status="pass" if ok else "fail", detail=f"/health answered {r.status_code}")

    def models(self) -> CheckResult:
        r = self.http.get(self.base + "/v1/models")
        if r.status_code != 200:
            return CheckResult(name="models", status="fail", detail=f"/v1/models answered {r.status_code}")
        listing = netio.json_of(r)
        data = listing.get("data") if isinstance(listing, dict) else None
        served = {m["id"]: m for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str)}
        if not served:
            return CheckResult(name="models", status="fail", detail="/v1/models lists no model")
        if self.model is None:
            self.model = next(iter(served))
        if self.model not in served:
            return CheckResult(
                name="models",
                status="fail",
                detail=f"expected served model {self.model!r} but this server serves "
                f"{', '.join(served)} (another server on this port?)",
            )
        entry = served[self.model]
        root = entry.get("root")
        if self.expect.root and root != self.expect.root:
            return CheckResult(
                name="models", status="fail", detail=f"{self.model} is served from {root}, expected {self.expect.root}"
            )
        return CheckResult(
            name="models",
            status="pass",
            detail=f"{self.model} from {root}",
            figures={"root": root, "max_model_len": entry.get("max_model_len")},
        )

    def chat(self) -> tuple[CheckResult, CheckResult]:
        resp = self.client.chat.completions.create(
            model=self.served,
            messages=[{"role": "user", "content": self.expect.prompt}],
            max_tokens=128,
            temperature=0,
            extra_body=NO_THINKING,
        )
        text = (resp.choices[0].message.content or "").strip()
        chat = CheckResult(
            name="chat",
            status="pass" if text else "fail",
            detail=f"{len(text)} characters: {text[:80]!r}" if text else "empty answer",
            figures={"completion_tokens": resp.usage.completion_tokens if resp.usage else None},
        )
        verdict = assess(text) if text else None
        if verdict is None:
            sanity = CheckResult(name="sanity", status="skipped", detail="no text to judge")
        else:
            sanity = CheckResult(
                name="sanity",
                status="pass" if verdict.ok else "fail",
                detail="reads as language" if verdict.ok else "gibberish: " + "; ".join(verdict.reasons),
                figures=verdict.scores,
            )
        return chat, sanity

    def reasoning(self) -> CheckResult:
        if self.expect.reasoning is False:
            return CheckResult(name="reasoning", status="skipped", detail="the recipe runs no reasoning parser")
        # thinking models can spend a small budget on reasoning alone: give it room (the card asks for ~32k)
        resp = self.client.chat.completions.create(
            model=self.served,
            messages=[{"role": "user", "content": self.expect.prompt}],
            max_tokens=1024,
            temperature=0,
        )
        reasoning = _reasoning_of(resp.choices[0].message)
        if reasoning:
            return CheckResult(name="reasoning", status="pass", detail=f"reasoning split off ({len(reasoning)} characters)")
        if self.expect.reasoning is None:
            return CheckResult(
                name="reasoning", status="skipped", detail="no reasoning in the reply and no recipe says a parser runs"
            )
        return CheckResult(name="reasoning", status="fail", detail="a reasoning parser should run but the reply has no reasoning")

    def tools(self) -> CheckResult:
        if self.expect.tools is False:
            return CheckResult(name="tools", status="skipped", detail="the recipe enables no tool-call parser")
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": WEATHER_PROMPT}]
        try:
            resp = self.client.chat.completions.create(
                model=self.served,
                messages=messages,
                tools=[WEATHER_TOOL],
                tool_choice="auto",
                max_tokens=256,
                temperature=0,
                extra_body=NO_THINKING,
            )
        except Exception as exc:  # vLLM answers 400 when auto tool choice is off
            if self.expect.tools is None:
                return CheckResult(name="tools", status="skipped", detail=f"tool calling not enabled ({str(exc)[:80]})")
            raise
        msg = resp.choices[0].message
        calls = msg.tool_calls or []
        if not calls:
            status = "skipped" if self.expect.tools is None else "fail"
            return CheckResult(name="tools", status=status, detail="no tool call parsed from the reply")
        call = calls[0]
        if call.type != "function":
            return CheckResult(name="tools", status="fail", detail=f"a {call.type!r} tool call, not a function call")
        try:
            args = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError:
            return CheckResult(name="tools", status="fail", detail=f"tool arguments are not JSON: {call.function.arguments!r}")
        if call.function.name != "get_weather":
            return CheckResult(name="tools", status="fail", detail=f"called unknown tool {call.function.name!r}")
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": call.function.arguments},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": json.dumps({"city": args.get("city"), "sky": "sunny", "celsius": 21}),
            },
        ]
        final = self.client.chat.completions.create(
            model=self.served,
            messages=messages,
            tools=[WEATHER_TOOL],
            max_tokens=256,
            temperature=0,
            extra_body=NO_THINKING,
        )
        answer = (final.choices[0].message.content or "").strip()
        if not answer:
            return CheckResult(name="tools", status="fail", detail="no answer after the tool result")
        return CheckResult(name="tools", status="pass", detail=f"get_weather({args}) then {answer[:60]!r}")

    def vision(self) -> CheckResult:
        if not self.expect.vision:
            return CheckResult(name="vision", status="skipped", detail="the recipe accepts no images")
        url = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
        resp = self.client.chat.completions.create(
            model=self.served,
            max_tokens=128,
            temperature=0,
            extra_body=NO_THINKING,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": "Describe what you see in this image."},
                    ],
                }
            ],
        )
        text = (resp.choices[0].message.content or "").strip()
        return CheckResult(
            name="vision", status="pass" if text else "fail", detail=text[:80] if text else "empty answer to an image"
        )

    def streaming(self) -> CheckResult:
        start = time.perf_counter()
        first = None
        chunks = 0
        usage_tokens = None
        stream = self.client.chat.completions.create(
            model=self.served,
            messages=[{"role": "user", "content": self.expect.prompt}],
            max_tokens=128,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=NO_THINKING,
        )
        for event in stream:
            if event.usage:
                usage_tokens = event.usage.completion_tokens
            if event.choices and (event.choices[0].delta.content or _reasoning_of(event.choices[0].delta)):
                now = time.perf_counter()
                first = first or now
                chunks += 1
        end = time.perf_counter()
        if first is None:
            return CheckResult(name="streaming", status="fail", detail="the stream carried no text")
        ttft = first - start
        tokens = usage_tokens or chunks
        # tokens after the first over the time to the end of the stream: chunks arrive in bursts, so
        # the last text chunk's arrival would overstate the rate
        decode = (tokens - 1) / (end - first) if tokens > 1 and end > first else None
        figures = {
            "ttft_s": round(ttft, 4),
            "chunks": chunks,
            "completion_tokens": tokens,
            "decode_tokens_per_s": round(decode, 1) if decode else None,
        }
        return CheckResult(
            name="streaming",
            status="pass",
            detail=f"first token after {ttft * 1000:.0f} ms, {chunks} chunks" + (f", {decode:.1f} tokens/s" if decode else ""),
            figures=figures,
        )

    def metrics(self) -> CheckResult:
        from prometheus_client.parser import text_string_to_metric_families

        r = self.http.get(self.base + "/metrics")
        if r.status_code != 200:
            return CheckResult(name="metrics", status="fail", detail=f"/metrics answered {r.status_code}")
        figures: dict = {}
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                if sample.name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"):
                    figures["kv_cache_usage_perc"] = sample.value
                elif sample.name == "vllm:num_requests_running":
                    figures["num_requests_running"] = figures.get("num_requests_running", 0) + sample.value
                elif sample.name == "vllm:num_requests_waiting":
                    figures["num_requests_waiting"] = figures.get("num_requests_waiting", 0) + sample.value
                elif sample.name.startswith("vllm:cache_config_info"):
                    labels = sample.labels
                    for key in ("kv_cache_size_tokens", "num_gpu_blocks", "block_size", "gpu_memory_utilization"):
                        if key in labels:
                            figures[key] = labels[key]
        if "kv_cache_usage_perc" not in figures:
            return CheckResult(name="metrics", status="fail", detail="no vLLM KV cache metrics in /metrics", figures=figures)
        return CheckResult(
            name="metrics",
            status="pass",
            detail=f"KV cache {figures['kv_cache_usage_perc']:.1%} used, {figures.get('num_requests_running', 0):g} running",
            figures=figures,
        )

    def speculative(self) -> CheckResult:
        from servectl.verify import acceptance

        r = self.http.get(self.base + "/metrics")
        if r.status_code != 200:
            return CheckResult(name="speculative", status="skipped", detail=f"/metrics answered {r.status_code}")
        return acceptance.check(r.text)


def _step(step: Callable[[], CheckResult | tuple[CheckResult, ...]]):
    try:
        return step()
    except Exception as exc:  # a check that errors is a failed check, with what went wrong
        return CheckResult(name=step.__name__, status="fail", detail=f"{exc.__class__.__name__}: {str(exc)[:200]}")


def api_key_from(api_key_env: str | None) -> str | None:
    """The API key in the variable `api_key_env` names: registered as a secret (never printed), refused
    (without showing it) unless it is one printable word, as an HTTP header needs it."""
    if not api_key_env:
        return None
    api_key = os.environ.get(api_key_env)
    if not api_key:
        raise UserError(f"environment variable {api_key_env} is not set", f"export {api_key_env}=... or drop --api-key-env")
    register_secret(api_key)
    if not all(0x21 <= ord(ch) <= 0x7E for ch in api_key):
        raise UserError(
            f"environment variable {api_key_env} holds a space, a control character or a non-ASCII "
            "character; an API key is one printable word",
            f"export {api_key_env} again without them",
        )
    return api_key


def run_checks(
    base_url: str,
    model: str | None = None,
    api_key_env: str | None = None,
    expect: Expectations | None = None,
    timeout_s: float = 120.0,
    on_check: Callable[[CheckResult], None] | None = None,
) -> Report:
    """Run every check against `base_url`. Raises UserError when the server cannot be reached at all."""
    api_key = api_key_from(api_key_env)
    expect = expect or expectations_for(model)
    checks = _Checks(base_url, api_key, expect, timeout_s)
    report = Report(url=base_url, model=expect.served_name, recipe=expect.recipe)
    try:
        first = checks.health()
    except httpx.TransportError as exc:
        raise UserError(
            f"cannot reach {base_url}: {exc.__class__.__name__}: {exc}",
            "is the server running? `servectl status` lists deployments",
        ) from None

    def record(result: CheckResult) -> None:
        report.checks.append(result)
        if on_check:
            on_check(result)

    record(first)
    record(_step(checks.models))
    if expect.recipe is None and checks.model:
        # no recipe named: the served name may still be a catalog recipe's, which says what applies
        found = expectations_for(checks.model)
        if found.recipe:
            checks.expect = expect = found
            report.recipe = found.recipe
    steps: list[Callable[[], CheckResult | tuple[CheckResult, ...]]] = [
        checks.chat,
        checks.reasoning,
        checks.tools,
        checks.vision,
        checks.streaming,
        checks.metrics,
        checks.speculative,
    ]
    for step in steps:
        name = step.__name__
        if any(c.name == "models" and c.status == "fail" for c in report.checks):
            record(CheckResult(name=name, status="skipped", detail="the expected model is not served here"))
            continue
        result = _step(step)
        for r in result if isinstance(result, tuple) else (result,):
            record(r)
    report.model = checks.model
    return report
