"""Public vLLM start-up logs (tests/data/logs/public/replays.yaml, each with its source) replayed by the planner:
KV tokens within one block, memory figures within 1 %."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from servectl.plan import planner as P
from servectl.vllmenv import args as va
from servectl.catalog.base import validate
from servectl.catalog.recipe import Architecture
from servectl.plan.vllm_log import parse_text

PUBLIC = Path(__file__).parent / "data" / "logs" / "public"
MANIFEST = yaml.safe_load((PUBLIC / "replays.yaml").read_text())
REPLAYS = MANIFEST["replays"]


def recipe_for(catalog, entry):
    if "recipe" in entry:
        return catalog.model(entry["recipe"])
    arch = validate(Architecture, MANIFEST["architectures"][entry["architecture"]])
    base = catalog.model("qwen3.5-35b-a3b-nvfp4")
    return replace(base, name=entry["architecture"], architecture=arch)


def settings_for(entry, **overrides):
    s = P.settings_from_flags(va.parse_args(entry["flags"]))
    return P.replace(s, **overrides) if overrides else s


def predict_blocks(catalog, entry, nb):
    recipe = recipe_for(catalog, entry)
    s = settings_for(entry)
    lay = P.layout_for(recipe, catalog.gpu("rtx-5090"), s, vllm_version=entry["vllm_version"])
    return P.predict(
        recipe,
        catalog.gpu("rtx-5090"),
        P.replace(s, kv_cache_memory_bytes=nb * lay.block_bytes),
        vllm_version=entry["vllm_version"],
    )


def test_at_least_eight_distinct_configurations():
    keys = {(e.get("recipe") or e.get("architecture"), e["vllm_version"], tuple(e["flags"])) for e in REPLAYS}
    assert len(keys) >= 8
    for e in REPLAYS:
        head = (PUBLIC / e["log"]).read_text().splitlines()[:3]
        assert any(e["source"] in line for line in head), e["log"]  # each excerpt names where it was quoted from


@pytest.mark.parametrize("entry", [e for e in REPLAYS if e["replay"] == "memory"], ids=lambda e: Path(e["log"]).stem)
def test_memory_replay_within_one_block(catalog, entry):
    log = parse_text((PUBLIC / entry["log"]).read_text())
    recipe = recipe_for(catalog, entry)
    s = settings_for(entry, kv_cache_memory_bytes=int(log.available_kv_gib * 2**30))
    plan = P.predict(recipe, catalog.gpu("rtx-5090"), s, vllm_version=entry["vllm_version"])
    # "Available KV cache memory" is rounded to 0.01 GiB: the block count may be one off, never more
    near = {nb: predict_blocks(catalog, entry, nb) for nb in (plan.num_blocks - 1, plan.num_blocks, plan.num_blocks + 1)}
    exact = [
        nb
        for nb, p in near.items()
        if p.kv_cache_tokens_logged == log.kv_cache_tokens and round(p.max_concurrency, 2) == log.max_concurrency
    ]
    assert exact, (plan.num_blocks, plan.kv_cache_tokens_logged, log.kv_cache_tokens)
    assert abs(plan.kv_cache_tokens_logged - log.kv_cache_tokens) <= abs(
        near[plan.num_blocks + 1].kv_cache_tokens_logged - near[plan.num_blocks].kv_cache_tokens_logged
    )
    assert plan.max_model_len == log.max_concurrency_len


@pytest.mark.parametrize("entry", [e for e in REPLAYS if e["replay"] == "layout"], ids=lambda e: Path(e["log"]).stem)
def test_layout_replay_exact(catalog, entry):
    """No memory line: some whole number of blocks must give exactly the logged tokens and concurrency."""
    log = parse_text((PUBLIC / entry["log"]).read_text())
    s = settings_for(entry)
    lay = P.layout_for(recipe_for(catalog, entry), catalog.gpu("rtx-5090"), s, vllm_version=entry["vllm_version"])
    nb = round(log.max_concurrency * lay.blocks_per_request(log.max_concurrency_len))
    found = [
        n
        for n in range(max(1, nb - 3), nb + 4)
        if (p := predict_blocks(catalog, entry, n)).kv_cache_tokens_logged == log.kv_cache_tokens
        and round(p.max_concurrency, 2) == log.max_concurrency
    ]
    assert found, (entry["log"], nb, log.kv_cache_tokens)


@pytest.mark.parametrize("entry", [e for e in REPLAYS if e["replay"] == "budget"], ids=lambda e: Path(e["log"]).stem)
def test_budget_replay_within_one_percent(catalog, entry):
    """vLLM's own terms (requested, weights, peak activation, non-torch, graph estimate) through the planner's
    budget give the KV memory vLLM reports."""
    log = parse_text((PUBLIC / entry["log"]).read_text())
    base = catalog.gpu("rtx-pro-6000-blackwell")
    gpu = replace(
        base,
        name="h100-80gb",
        usable_memory_gib=log.total_memory_gib,
        context_overhead_gib=round(log.total_memory_gib - log.free_memory_gib, 2),
    )
    gib = 1024.0
    corr = P.Correction(
        starts=1,
        weights_mib=log.weights_gib * gib,
        activation_mib=log.peak_activation_gib * gib,
        non_torch_mib=log.non_torch_gib * gib,
        cudagraph_mib=log.cudagraph_gib * gib,
        cudagraph_estimate_mib=log.cudagraph_estimate_gib * gib,
    )
    plan = P.predict(
        catalog.model(entry["recipe"]), gpu, settings_for(entry), vllm_version=entry["vllm_version"], correction=corr
    )
    assert plan.budget["requested"] == pytest.approx(log.requested_gib * gib, rel=0.01)
    assert plan.budget["kv_available"] == pytest.approx(log.available_kv_gib * gib, rel=0.01)
    assert "calibrated from 1 start" in plan.notes[0]
