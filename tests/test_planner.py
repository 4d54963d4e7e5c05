"""Planner against vLLM's real behaviour: a real CPU start, public GPU logs, and the source's invariants."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from servectl.plan import planner as P
from servectl.plan.vllm_log import parse_text

LOGS = Path(__file__).parent / "data" / "logs"


@pytest.fixture(scope="module")
def nvfp4(catalog):
    return catalog.model("qwen3.5-35b-a3b-nvfp4")


def test_cpu_prediction_matches_real_start(catalog):
    real = parse_text((LOGS / "cpu-start-tiny-qwen3next.log").read_text())
    cfg = json.loads((LOGS / "cpu-start-tiny-qwen3next.config.json").read_text())
    recipe = catalog.model("tiny-cpu")
    arch = recipe.architecture
    # the recipe describes the checkpoint that produced the log
    assert (arch.head_dim, arch.num_kv_heads, arch.linear.key_head_dim, arch.linear.num_value_heads) == (
        cfg["head_dim"], cfg["num_key_value_heads"], cfg["linear_key_head_dim"], cfg["linear_num_value_heads"])
    s = P.Settings(kv_cache_memory_bytes=real.kv_cache_memory_bytes, max_model_len=real.max_model_len, enforce_eager=True)
    plan = P.predict(recipe, catalog.gpu("cpu"), s, vllm_version=real.vllm_version)
    assert plan.device == real.device
    assert plan.num_blocks == real.num_gpu_blocks
    assert plan.kv_cache_tokens_logged == real.kv_cache_tokens
    assert round(plan.max_concurrency, 2) == real.max_concurrency
    lay = P.layout(arch, cpu=True, prefix_caching=True)
    assert round(100 * (lay.page_bytes - lay.mamba_state_bytes) / lay.mamba_state_bytes, 2) == real.mamba_padding_pct


@pytest.mark.parametrize("log", ["gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-a.log", "gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-b.log"])
def test_gpu_v024_logged_tokens_exact(catalog, log):
    real = parse_text((LOGS / log).read_text())
    s = P.Settings(kv_cache_memory_bytes=int(real.available_kv_gib * 2**30), kv_cache_dtype=real.args["kv_cache_dtype"],
                   enable_prefix_caching=True, max_model_len=real.max_model_len, max_num_seqs=1)
    plan = P.predict(catalog.model("qwen3.6-35b-a3b-fp8"), catalog.gpu("rtx-5090"), s, vllm_version="0.24.0")
    assert plan.block_size == 2096
    assert plan.kv_cache_tokens_logged == real.kv_cache_tokens
    assert round(plan.max_concurrency, 2) == real.max_concurrency


def test_qwen35_layout_and_versions(catalog, nvfp4):
    lay = P.layout(nvfp4.architecture)
    assert (lay.block_size, lay.page_bytes, lay.mamba_state_bytes) == (1056, 2_162_688, 2_146_304)
    assert (lay.layers_per_group, lay.attn_groups, lay.mamba_groups) == (10, 1, 3)
    s = P.Settings(kv_cache_memory_bytes=20600 * 2**20, max_model_len_auto=True)
    gpu = catalog.gpu("rtx-pro-6000-blackwell")
    old = P.predict(nvfp4, gpu, s, vllm_version="0.18.0")
    new = P.predict(nvfp4, gpu, s, vllm_version="0.20.2")
    assert old.num_blocks == 998 and old.kv_cache_tokens_logged == 262_944  # the card's "1x" line
    assert old.max_model_len == 262_144 and round(old.max_concurrency, 2) == 3.96
    assert new.kv_cache_tokens_logged == int(998 / (249 + 3) * 262_144)  # cdiv(262144, 1056) = 249
    assert old.kv_cache_tokens_real == 262_144  # one request really holds the native context


def test_hybrid_prefix_caching_default_follows_the_released_versions(catalog, nvfp4):
    # Off through 0.27.1 (unsupported to 0.25, opt-in in 0.26-0.27), on from 0.28.0 (PR #50991):
    # with it on, each request's Gated-DeltaNet state takes two blocks ('align' mode), so vLLM
    # reports fewer tokens and less concurrency from the same blocks.
    s = P.Settings(kv_cache_memory_bytes=20600 * 2**20, max_model_len=32768)
    gpu = catalog.gpu("rtx-pro-6000-blackwell")
    plans = {v: P.predict(nvfp4, gpu, s, vllm_version=v) for v in ("0.24.0", "0.27.1", "0.28.0", "0.32.0")}
    tokens = {v: p.kv_cache_tokens_logged for v, p in plans.items()}
    assert tokens["0.24.0"] == tokens["0.27.1"] > tokens["0.28.0"] == tokens["0.32.0"]
    assert plans["0.28.0"].max_concurrency < plans["0.27.1"].max_concurrency
    explicit = P.predict(nvfp4, gpu, replace(s, enable_prefix_caching=True), vllm_version="0.27.1")
    assert explicit.kv_cache_tokens_logged == tokens["0.28.0"]  # --enable-prefix-caching on 0.27.1 = the 0.28 default


def test_capture_sizes_follow_vllm():
    assert P.capture_sizes(32) == [1, 2, 4, 8, 16, 24, 32]
    assert len(P.capture_sizes(512)) == 51 and P.capture_sizes(512)[-1] == 512


def test_flags_parse_like_vllm():
    flags = P.va.parse_args(["--kv-cache-memory-bytes", "20600M", "--limit-mm-per-prompt", '{"image": 2}',
                             "--limit-mm-per-prompt.video", "0", "--max-model-len", "auto", "--enforce-eager"])
    s = P.settings_from_flags(flags, {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "1"})
    assert s.kv_cache_memory_bytes == 20600 * 2**20 and s.limit_mm == {"image": 2, "video": 0}
    assert s.max_model_len_auto and s.enforce_eager and s.estimate_cudagraphs is True


_arch_settings = dict(max_num_seqs=32, max_num_batched_tokens=2048, max_cudagraph_capture_size=32, max_model_len=32768)


@hsettings(max_examples=40, deadline=None)
@given(u1=st.floats(0.5, 0.99), u2=st.floats(0.5, 0.99), version=st.sampled_from(["0.18.0", "0.19.1", "0.20.2", "0.32.0"]))
def test_more_utilization_never_fewer_tokens(catalog, u1, u2, version):
    lo, hi = sorted((u1, u2))
    recipe, gpu = catalog.model("qwen3.5-35b-a3b-nvfp4"), catalog.gpu("rtx-pro-6000-blackwell")
    a = P.predict(recipe, gpu, P.Settings(gpu_memory_utilization=lo, **_arch_settings), vllm_version=version)
    b = P.predict(recipe, gpu, P.Settings(gpu_memory_utilization=hi, **_arch_settings), vllm_version=version)
    assert b.kv_cache_tokens_logged >= a.kv_cache_tokens_logged
    assert b.kv_cache_tokens_real >= a.kv_cache_tokens_real


@hsettings(max_examples=40, deadline=None)
@given(n1=st.integers(1, 512), n2=st.integers(1, 512), kv=st.integers(1, 40), eager=st.booleans())
def test_more_seqs_never_less_vram(catalog, n1, n2, kv, eager):
    lo, hi = sorted((n1, n2))
    recipe, gpu = catalog.model("qwen3.5-35b-a3b-nvfp4"), catalog.gpu("rtx-pro-6000-blackwell")
    base = P.Settings(kv_cache_memory_bytes=kv * 2**30, max_model_len=32768, enforce_eager=eager)
    a = P.predict(recipe, gpu, replace(base, max_num_seqs=lo))
    b = P.predict(recipe, gpu, replace(base, max_num_seqs=hi))
    assert b.total_vram_mib >= a.total_vram_mib


def test_plan_cli_json_contract(cli):
    r = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--target-context", "32768", "--headless", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for key in ("kv_cache_tokens_logged", "kv_cache_tokens_real", "max_concurrency", "total_vram_mib", "budget",
                "max_model_len", "block_size", "num_blocks", "vllm_version", "flags"):
        assert key in d
    assert d["max_model_len"] == 32768 and d["kv_cache_tokens_real"] >= 32768 and d["fits"]
    assert all(isinstance(v, (int, float)) for v in d["budget"].values())
    flags = d["flags"]
    util = float(flags[flags.index("--gpu-memory-utilization") + 1])
    assert util <= 0.956  # the headless ceiling
    # the returned flags, planned forward again, give the context they promise
    again = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--gpu-memory-utilization", str(util),
                "--max-model-len", "32768", "--json")
    assert json.loads(again.stdout)["kv_cache_tokens_real"] >= 32768


def test_plan_cli_impossible_names_largest_context(cli):
    r = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--target-context", "262144", "--headless",
            "--vllm-version", "0.19.1")
    assert r.exit_code == 2
    assert "largest context that fits is --max-model-len" in r.stderr and "Traceback" not in r.stderr


def test_plan_cli_weights_exceed_budget(cli):
    r = cli("plan", "qwen3.6-35b-a3b-fp8", "--gpu", "rtx-pro-6000-blackwell", "--gpu-memory-utilization", "0.3")
    assert r.exit_code == 2 and "does not fit" in r.stderr


def test_plan_cli_auto_and_bad_flag(cli):
    r = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--max-model-len", "auto", "--vllm-version", "0.20.2", "--json")
    d = json.loads(r.stdout)
    assert 0 < d["max_model_len"] < 262144 and d["env"]["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"] == "1"
    bad = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--no-such-flag", "3")
    assert bad.exit_code == 2 and "not a vLLM memory flag" in bad.stderr


def test_unified_memory_leaves_os_headroom(cli):
    r = cli("plan", "qwen3.6-35b-a3b-fp8", "--gpu", "dgx-spark", "--json")
    d = json.loads(r.stdout)
    assert d["budget"]["os_headroom"] > 0
    assert any("unified memory" in n for n in d["notes"])
