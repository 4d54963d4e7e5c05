"""Captured starts of every family on the vLLM 0.32 CPU build (tests/data/logs/families: the logs
tests/test_families_live.py compares live, with the tiny checkpoints' config.json) replayed by the planner:
KV tokens, maximum concurrency and the KV groups' block sizes exactly as logged. Runs without vLLM, so every
test run checks the layouts against real starts; the live test re-derives the same figures on the machine at hand."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from servectl.catalog.load import load_catalog
from servectl.checkpoint.recipe import checkpoint_recipe
from servectl.checkpoint.source import LocalDirectory
from servectl.hardware.cpu_features import CpuFeatures
from servectl.plan import planner as P
from servectl.plan.vllm_log import parse_text

FAMILIES = Path(__file__).parent / "data" / "logs" / "families"
LOGS = sorted(FAMILIES.glob("*.log"))
HEADER = re.compile(r"tiny-(\S+) with (.*?); ")


def replay(log_path: Path, tmp_path: Path, check_target: bool = True):
    text = log_path.read_text()
    family, flags = HEADER.search(text.splitlines()[0]).groups()
    host = text.splitlines()[1]
    features = CpuFeatures(avx512_bf16="avx512_bf16=True" in host, amx="amx=True" in host, source="the captured host")
    ckpt = tmp_path / f"tiny-{family}"
    ckpt.mkdir(parents=True)
    shutil.copy(FAMILIES / f"{family}.config.json", ckpt / "config.json")
    cat = load_catalog()
    recipe, _ = checkpoint_recipe(LocalDirectory(ckpt), list(cat.gpus))
    s = P.settings_from_flags(P.va.parse_args(flags.split()))
    plan = P.predict(recipe, cat.gpu("cpu"), s, vllm_version="0.32.0", host=features, check_target=check_target)
    return plan, parse_text(text)


def test_every_family_was_captured():
    names = {p.stem for p in LOGS}
    assert {
        "llama",
        "qwen3",
        "qwen3-moe",
        "mistral",
        "gemma2",
        "gemma3",
        "gpt-oss",
        "deepseek-v3",
        "glm4-moe",
        "nemotron-h",
        "granite-h",
        "falcon-h1",
        "jamba",
    } <= names


@pytest.mark.parametrize("log_path", [p for p in LOGS if p.stem != "jamba"], ids=lambda p: p.stem)
def test_captured_start_replays_exactly(log_path, tmp_path):
    plan, log = replay(log_path, tmp_path)
    assert (plan.kv_cache_tokens_logged, round(plan.max_concurrency, 2)) == (log.kv_cache_tokens, log.max_concurrency)
    assert plan.max_model_len == log.max_concurrency_len
    blocks = [g["block_size"] for g in plan.layout]
    assert blocks == (log.group_block_sizes or [blocks[0]])
    if log.block_size is not None:
        assert plan.block_size == log.block_size
    if log.mamba_padding_pct is not None:  # "Padding mamba page size by X%": the state bytes vLLM computed
        lay = next(g for g in plan.layout if g["kind"] == "mamba")
        assert lay["page_bytes"] > 0


def test_jamba_figures_match_although_the_cpu_build_cannot_serve_it(tmp_path):
    with pytest.raises(P.VllmRefuses, match="Mamba1"):
        replay(FAMILIES / "jamba.log", tmp_path / "a")
    plan, log = replay(FAMILIES / "jamba.log", tmp_path / "b", check_target=False)
    assert (plan.kv_cache_tokens_logged, round(plan.max_concurrency, 2)) == (log.kv_cache_tokens, log.max_concurrency)
    assert "IndexError" in (FAMILIES / "jamba.log").read_text()  # the first request's failure, as captured
