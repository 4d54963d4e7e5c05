"""Planner against vLLM's real behaviour: a real CPU start, public GPU logs, and the source's invariants."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from servectl.plan import planner as P
from servectl.hardware.cpu_features import CpuFeatures
from servectl.plan.vllm_log import parse_text

LOGS = Path(__file__).parent / "data" / "logs"
NO_AVX512_BF16 = CpuFeatures(source="test: AVX2 host")
AVX512_BF16 = CpuFeatures(avx512_bf16=True, source="test: AVX-512 BF16 host")
AMX = CpuFeatures(avx512_bf16=True, amx=True, source="test: AMX host")


@pytest.fixture(scope="module")
def nvfp4(catalog):
    return catalog.model("qwen3.5-35b-a3b-nvfp4")


def test_cpu_prediction_matches_captured_start(catalog):
    # captured on an AVX2 host (no AVX-512 BF16): the GDN state stays bfloat16, block 128 (padding 75.34%)
    real = parse_text((LOGS / "cpu-start-tiny-qwen3next.log").read_text())
    cfg = json.loads((LOGS / "cpu-start-tiny-qwen3next.config.json").read_text())
    recipe = catalog.model("tiny-cpu")
    arch = recipe.architecture
    # the recipe describes the checkpoint that produced the log
    assert (arch.head_dim, arch.num_kv_heads, arch.linear.key_head_dim, arch.linear.num_value_heads) == (
        cfg["head_dim"],
        cfg["num_key_value_heads"],
        cfg["linear_key_head_dim"],
        cfg["linear_num_value_heads"],
    )
    s = P.Settings(kv_cache_memory_bytes=real.kv_cache_memory_bytes, max_model_len=real.max_model_len, enforce_eager=True)
    plan = P.predict(recipe, catalog.gpu("cpu"), s, vllm_version=real.vllm_version, host=NO_AVX512_BF16)
    assert plan.device == real.device
    assert plan.num_blocks == real.num_gpu_blocks
    assert plan.kv_cache_tokens_logged == real.kv_cache_tokens
    assert round(plan.max_concurrency, 2) == real.max_concurrency
    lay = P.layout(arch, cpu=True, prefix_caching=True)
    assert round(100 * (lay.page_bytes - lay.mamba_state_bytes) / lay.mamba_state_bytes, 2) == real.mamba_padding_pct


# vllm/platforms/cpu.py check_and_update_config, per release (servectl.catalog.versions): one row per branch.
@pytest.mark.parametrize(
    "version, host, requested, declared, dtype",
    [
        ("0.25.1", AMX, "auto", "bfloat16", "bfloat16"),  # no rule yet
        ("0.26.0", AVX512_BF16, "auto", "bfloat16", "bfloat16"),  # 0.26-0.28: AMX only
        ("0.26.0", AMX, "auto", "bfloat16", "float32"),
        ("0.28.0", AMX, "bfloat16", "bfloat16", "float32"),  # no exception for an explicit bf16 there
        ("0.29.0", NO_AVX512_BF16, "auto", "bfloat16", "bfloat16"),
        ("0.29.0", AVX512_BF16, "auto", "bfloat16", "float32"),  # 0.29+: AVX-512 BF16 is enough
        ("0.32.0", AMX, "auto", "bfloat16", "float32"),
        ("0.32.0", AVX512_BF16, "bfloat16", "bfloat16", "bfloat16"),  # explicit bf16/fp16 kept ("gdn" backend)
        ("0.32.0", AVX512_BF16, "float16", "bfloat16", "float16"),
        ("0.32.0", AVX512_BF16, "auto", "float32", "float32"),  # Qwen3.5's config already asks float32
    ],
)
def test_cpu_ssm_dtype_rule_each_branch(version, host, requested, declared, dtype):
    assert P.cpu_ssm_dtype(version, host, declared, requested)[0] == dtype


def test_cpu_avx512_bf16_host_gets_the_logged_figures(catalog):
    # what vLLM 0.32 logs for the demo's flags on an AVX-512 BF16 host: float32 state, 256-token blocks
    # ("Setting attention block size to 256 tokens"), 1,024 blocks of 14 per request
    recipe, cpu = catalog.model("tiny-cpu"), catalog.gpu("cpu")
    s = P.Settings(kv_cache_memory_bytes=64 * 2**20, max_model_len=2048, enforce_eager=True)
    plan = P.predict(recipe, cpu, s, vllm_version="0.32.0", host=AVX512_BF16)
    assert (plan.block_size, plan.num_blocks, plan.kv_cache_tokens_logged) == (256, 1024, 149_796)
    assert round(plan.max_concurrency, 2) == 73.14
    lay = P.layout(recipe.architecture, cpu=True, prefix_caching=True, ssm_dtype="float32")
    assert round(100 * (lay.page_bytes - lay.mamba_state_bytes) / lay.mamba_state_bytes, 2) == 86.86
    # an explicit bf16 state keeps the AVX2 figures; 0.28 had the rule for AMX hosts only
    assert (
        P.predict(
            recipe, cpu, replace(s, mamba_ssm_cache_dtype="bfloat16"), vllm_version="0.32.0", host=AVX512_BF16
        ).kv_cache_tokens_logged
        == 190_650
    )
    assert P.predict(recipe, cpu, s, vllm_version="0.28.0", host=AVX512_BF16).block_size == 128
    # VLLM_CPU_KVCACHE_SPACE (GiB) replaces --kv-cache-memory-bytes
    spaced = P.predict(recipe, cpu, replace(s, cpu_kvcache_space_gib=1), vllm_version="0.32.0", host=AVX512_BF16)
    assert spaced.num_blocks == 2**30 // 65_536


@pytest.mark.parametrize("log", ["gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-a.log", "gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-b.log"])
def test_gpu_v024_logged_tokens_exact(catalog, log):
    real = parse_text((LOGS / log).read_text())
    s = P.Settings(
        kv_cache_memory_bytes=int(real.available_kv_gib * 2**30),
        kv_cache_dtype=real.args["kv_cache_dtype"],
        enable_prefix_caching=True,
        max_model_len=real.max_model_len,
        max_num_seqs=1,
    )
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
    assert old.kv_cache_tokens_real == 262_144 and old.fits  # one request really holds the native context
    assert old.warnings and "4.0x the logged figure" in old.warnings[-1]


def test_null_block_counted_once_for_auto_fits_and_real(catalog, nvfp4):
    """`auto` is what vLLM picks; `fits` and kv_cache_tokens_real count the null block the way the BlockPool does."""
    gpu = catalog.gpu("rtx-pro-6000-blackwell")
    s = P.Settings(kv_cache_memory_bytes=100 * 21_626_880, max_model_len_auto=True, enable_prefix_caching=False)  # 100 blocks
    before = P.predict(nvfp4, gpu, s, vllm_version="0.28.0")  # check and auto-fit ignore the null block
    after = P.predict(nvfp4, gpu, s, vllm_version="0.29.0")  # "Reserve the null block" (kv_cache_utils.py)
    assert before.num_blocks == after.num_blocks == 100
    assert before.max_model_len == (100 - 3) * 1056 and not before.fits
    assert before.kv_cache_tokens_real == (100 - 1 - 3) * 1056 == after.max_model_len
    assert after.fits and after.kv_cache_tokens_real == after.max_model_len and not any("null block" in w for w in after.warnings)
    assert any("the longest request that runs is 101,376 tokens" in w for w in before.warnings)


def test_plan_refuses_only_what_vllm_refuses(catalog, nvfp4):
    gpu = catalog.gpu("rtx-pro-6000-blackwell")
    s = P.Settings(kv_cache_memory_bytes=100 * 21_626_880, max_model_len=262_144)
    # 0.18 sizes one request by a mamba group: it starts (warned), 0.19+ refuses and names its check and the fix
    starts = P.predict(nvfp4, gpu, s, vllm_version="0.18.0")
    assert starts.vllm_starts and not starts.fits and starts.max_model_len == 262_144
    with pytest.raises(P.VllmRefuses, match="To serve at least one request") as exc:
        P.predict(nvfp4, gpu, s, vllm_version="0.19.1")
    assert exc.value.hint == f"use --max-model-len {97 * 1056} (vLLM's own estimate) or give the KV cache more memory"
    with pytest.raises(P.VllmRefuses, match="max_position_embeddings"):
        P.predict(nvfp4, gpu, replace(s, max_model_len=300_000), vllm_version="0.18.0")
    with pytest.raises(P.VllmRefuses, match="No available memory for the cache blocks"):
        P.predict(nvfp4, catalog.gpu("rtx-5090"), P.Settings(gpu_memory_utilization=0.5), vllm_version="0.18.0")


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


def test_capture_sizes_and_graphs_follow_vllm():
    assert P.capture_sizes(32) == [1, 2, 4, 8, 16, 24, 32]
    assert len(P.capture_sizes(512)) == 51 and P.capture_sizes(512)[-1] == 512
    # vLLM's defaults for 256 sequences: "PIECEWISE=51 (largest=512), FULL=35 (largest=256)" (public logs, PR #39559)
    g = P.graphs_for(seqs=256, mbt=8192, max_capture=None)
    assert (len(g.piecewise), max(g.piecewise), len(g.full), max(g.full)) == (51, 512, 35, 256)
    card = P.graphs_for(seqs=32, mbt=2048, max_capture=32)
    assert (len(card.piecewise), len(card.full)) == (7, 7)
    # speculative decoding multiplies the decode query length: sizes up to 2 x seqs x (1 + spec)
    assert max(P.graphs_for(seqs=2, mbt=8192, max_capture=None, num_spec=3).piecewise) == 16
    assert P.graphs_for(seqs=32, mbt=2048, max_capture=None, eager=True).count == 0


def test_sampler_memory_follows_the_sampler_path(nvfp4):
    arch = nvfp4.architecture
    # 8+ rows: in-place Triton top-k/top-p, 14 B per logit; below 8 the PyTorch sort adds values + int64 ids
    assert P.sampler_mib(arch, 256) == pytest.approx(256 * 248_320 * 14 / 2**20)
    assert P.sampler_mib(arch, 4) == pytest.approx(4 * 248_320 * 26 / 2**20)


def test_card_settings_run_256_sequences(catalog, nvfp4):
    """The card's 5090 settings with 256 sequences start (the card runs them), and cost more VRAM than 32."""
    gpu = catalog.gpu("rtx-5090")
    base = P.Settings(
        gpu_memory_utilization=0.95,
        max_num_batched_tokens=2048,
        limit_mm={"video": 0},
        max_model_len=32768,
        estimate_cudagraphs=True,
    )
    few = P.predict(nvfp4, gpu, replace(base, max_num_seqs=32, max_cudagraph_capture_size=32), vllm_version="0.18.0")
    many = P.predict(nvfp4, gpu, replace(base, max_num_seqs=256, max_cudagraph_capture_size=256), vllm_version="0.18.0")
    assert many.total_vram_mib > few.total_vram_mib
    assert many.budget["sampler_warmup"] > few.budget["sampler_warmup"]


def test_flags_parse_like_vllm():
    flags = P.va.parse_args(
        [
            "--kv-cache-memory-bytes",
            "20600M",
            "--limit-mm-per-prompt",
            '{"image": 2}',
            "--limit-mm-per-prompt.video",
            "0",
            "--max-model-len",
            "auto",
            "--enforce-eager",
            "--speculative-config",
            '{"method": "mtp", "num_speculative_tokens": 3}',
            "--mamba-ssm-cache-dtype",
            "bfloat16",
            "--dtype",
            "float16",
        ]
    )
    s = P.settings_from_flags(flags, {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "1", "VLLM_CPU_KVCACHE_SPACE": "2"})
    assert s.kv_cache_memory_bytes == 20600 * 2**20 and s.limit_mm == {"image": 2, "video": 0}
    assert s.max_model_len_auto and s.enforce_eager and s.estimate_cudagraphs is True
    assert (s.num_speculative_tokens, s.mamba_ssm_cache_dtype, s.dtype, s.cpu_kvcache_space_gib) == (3, "bfloat16", "float16", 2)


_arch_settings = dict(max_num_seqs=32, max_num_batched_tokens=2048, max_cudagraph_capture_size=32)
_VERSIONS = ["0.18.0", "0.19.1", "0.20.2", "0.28.0", "0.29.0", "0.32.0"]


def _plan_or_none(*args, **kw):
    try:
        return P.predict(*args, **kw)
    except P.VllmRefuses:
        return None


@hsettings(max_examples=60, deadline=None)
@given(
    u1=st.floats(0.5, 0.99),
    u2=st.floats(0.5, 0.99),
    version=st.sampled_from(_VERSIONS),
    auto=st.booleans(),
    gpu=st.sampled_from(["rtx-pro-6000-blackwell", "rtx-5090"]),
)
def test_more_utilization_never_fewer_tokens(catalog, u1, u2, version, auto, gpu):
    lo, hi = sorted((u1, u2))
    recipe, profile = catalog.model("qwen3.5-35b-a3b-nvfp4"), catalog.gpu(gpu)
    extra = dict(max_model_len_auto=True) if auto else dict(max_model_len=32768)
    a = _plan_or_none(recipe, profile, P.Settings(gpu_memory_utilization=lo, **_arch_settings, **extra), vllm_version=version)
    b = _plan_or_none(recipe, profile, P.Settings(gpu_memory_utilization=hi, **_arch_settings, **extra), vllm_version=version)
    if a is None:
        return  # vLLM refuses the lower one: nothing to compare (the higher may start)
    assert b is not None  # what starts at a lower utilization starts at a higher one
    assert b.kv_cache_tokens_logged >= a.kv_cache_tokens_logged
    assert b.kv_cache_tokens_real >= a.kv_cache_tokens_real


@hsettings(max_examples=60, deadline=None)
@given(
    n1=st.integers(1, 512),
    n2=st.integers(1, 512),
    kv=st.integers(1, 40),
    eager=st.booleans(),
    pinned=st.booleans(),
    estimate=st.booleans(),
    util=st.floats(0.8, 0.95),
    version=st.sampled_from(_VERSIONS),
)
def test_more_seqs_never_less_vram(catalog, n1, n2, kv, eager, pinned, estimate, util, version):
    lo, hi = sorted((n1, n2))
    recipe, gpu = catalog.model("qwen3.5-35b-a3b-nvfp4"), catalog.gpu("rtx-pro-6000-blackwell")
    base = P.Settings(
        kv_cache_memory_bytes=kv * 2**30 if pinned else None,
        gpu_memory_utilization=util,
        max_model_len=8192,
        enforce_eager=eager,
        estimate_cudagraphs=estimate,
    )
    a = _plan_or_none(recipe, gpu, replace(base, max_num_seqs=lo), vllm_version=version)
    b = _plan_or_none(recipe, gpu, replace(base, max_num_seqs=hi), vllm_version=version)
    if a is None or b is None:
        return
    assert b.total_vram_mib >= a.total_vram_mib - 1e-6  # float sums in another order differ in the last bits


def test_plan_cli_json_contract(cli):
    r = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--target-context", "32768", "--headless", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for key in (
        "kv_cache_tokens_logged",
        "kv_cache_tokens_real",
        "max_concurrency",
        "total_vram_mib",
        "budget",
        "max_model_len",
        "block_size",
        "num_blocks",
        "vllm_version",
        "flags",
        "fits",
        "vllm_starts",
        "warnings",
        "ignored_flags",
    ):
        assert key in d
    assert d["vllm_version"] == "0.18.0"  # the profile's image tag, vllm/vllm-openai:v0.18.0-cu130
    assert d["max_model_len"] == 32768 and d["kv_cache_tokens_real"] >= 32768 and d["fits"]
    assert all(isinstance(v, (int, float)) for v in d["budget"].values())
    flags = d["flags"]
    util = float(flags[flags.index("--gpu-memory-utilization") + 1])
    assert util <= 0.956  # the headless ceiling
    # the returned flags, planned forward again, give the context they promise
    again = cli(
        "plan",
        "qwen3.5-35b-a3b-nvfp4",
        "--gpu",
        "rtx-5090",
        "--gpu-memory-utilization",
        str(util),
        "--max-model-len",
        "32768",
        "--json",
    )
    assert json.loads(again.stdout)["kv_cache_tokens_real"] >= 32768


def test_plan_cli_impossible_target_names_largest_context(cli):
    r = cli(
        "plan",
        "qwen3.5-35b-a3b-nvfp4",
        "--gpu",
        "rtx-5090",
        "--target-context",
        "262144",
        "--headless",
        "--vllm-version",
        "0.19.1",
    )
    assert r.exit_code == 2
    assert "largest context that fits is --max-model-len" in r.stderr and "Traceback" not in r.stderr


def test_plan_cli_names_vllms_check_when_it_refuses(cli):
    r = cli("plan", "qwen3.6-35b-a3b-fp8", "--gpu", "rtx-pro-6000-blackwell", "--gpu-memory-utilization", "0.3")
    assert r.exit_code == 2 and "No available memory for the cache blocks" in r.stderr
    r = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--max-model-len", "262144", "--vllm-version", "0.20.2")
    assert r.exit_code == 2 and "To serve at least one request" in r.stderr and "--max-model-len" in r.stderr


def test_card_command_plans_with_exit_0_and_warnings(cli):
    # the model card's own command on the 5090, vLLM 0.18 image: vLLM keeps the native length and starts
    r = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--max-model-len", "auto", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["max_model_len"] == 262_144 and d["vllm_starts"] and not d["fits"]
    assert any("the longest request that runs is" in w for w in d["warnings"])
    assert any("x the logged figure" in w for w in d["warnings"])
    # the same on 0.19: auto shrinks to what vLLM's check allows, one block above what really runs
    d19 = json.loads(
        cli(
            "plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--max-model-len", "auto", "--vllm-version", "0.19.1", "--json"
        ).stdout
    )
    assert d19["max_model_len"] == d19["kv_cache_tokens_real"] + d19["block_size"] and not d19["fits"]


def test_whole_vllm_command_line_is_accepted(cli, catalog):
    """Each card's own command, as written, plans with exit 0 on its profiles; flags that do not change memory are listed."""
    ran = 0
    for recipe in catalog.models.values():
        if recipe.card is None:
            continue
        launches = dict(recipe.card.profile_launches)
        if recipe.card.base is not None:
            for prof, extra in recipe.card.profiles.items():
                launches[prof] = replace(recipe.card.base, args=recipe.card.base.args + list(extra))
        for prof, launch in launches.items():
            r = cli("plan", recipe.name, "--gpu", prof, "--json", "vllm", "serve", launch.model, *launch.args)
            assert r.exit_code == 0, (recipe.name, prof, r.output)
            d = json.loads(r.stdout)
            assert d["vllm_starts"]
            if "--reasoning-parser" in launch.args:
                assert "--reasoning-parser" in d["ignored_flags"]
            assert not any(f in d["ignored_flags"] for f in ("--max-model-len", "--gpu-memory-utilization", "--dtype"))
            ran += 1
    assert ran >= 4


def test_unified_memory_leaves_os_headroom(cli):
    r = cli("plan", "qwen3.6-35b-a3b-fp8", "--gpu", "dgx-spark", "--json")
    d = json.loads(r.stdout)
    assert d["budget"]["os_headroom"] > 0
    assert any("unified memory" in n for n in d["notes"])


def test_plan_cli_checks_other_flags_with_vllms_parser(cli, vllm_python):
    # the cpu profile's vLLM is installed here (0.32): its own parser judges the flags the planner does not use
    ok = cli("plan", "tiny-cpu", "--gpu", "cpu", "--json", "--reasoning-parser", "qwen3", "--served-model-name", "t")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ignored_flags"] == ["--reasoning-parser", "qwen3", "--served-model-name", "t"]
    bad = cli("plan", "tiny-cpu", "--gpu", "cpu", "--no-such-flag", "3")
    assert bad.exit_code == 2 and "no such option: --no-such-flag" in bad.stderr and "Traceback" not in bad.stderr
    # after `--` a flag servectl's table lacks is left to the vLLM that will run: here installed, so its parser refuses
    bad = cli("plan", "tiny-cpu", "--gpu", "cpu", "--", "--no-such-flag", "3")
    assert bad.exit_code == 2 and "unrecognized arguments: --no-such-flag" in bad.stderr and "Traceback" not in bad.stderr


def test_plan_table_prints_warnings_as_plain_lines(cli):
    r = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--vllm-version", "0.18.0")
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.stdout.splitlines() if ln.startswith("warning: ")]
    assert any("will log" in ln for ln in warnings) and "[yellow]" not in r.stdout
