"""MTP speculative decoding: the --speculative choice, renders in every format, vLLM's own parser on
every profile's rendered command, the guards, and the planner against real CPU starts."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import free_port  # noqa: F401  (shared fixtures module)
from servectl.errors import UserError
from servectl.plan import planner as P
from servectl.plan.checkpoint import weight_bytes
from servectl.plan.vllm_log import parse_text
from servectl.render import FORMATS
from servectl.spec import speculative as S
from servectl.spec.resolve import Request, resolve
from servectl.vllmenv import args as va
from servectl.vllmenv.vllm_parser import vllm_parse
from test_checkpoint import write_safetensors

LOGS = Path(__file__).parent / "data" / "logs"


def spec_config(tokens: list[str]) -> dict | None:
    raw = va.get(va.parse_args(tokens), S.FLAG)
    return None if raw is None else json.loads(raw)


def test_choice_spellings():
    assert S.parse_choice("mtp") == S.Choice(True, None)
    assert S.parse_choice("MTP:3") == S.Choice(True, 3)
    assert S.parse_choice("off") == S.Choice(False)
    for bad in ("mtp:0", "mtp:x", "eagle", "mtp:17", ""):
        with pytest.raises(UserError):
            S.parse_choice(bad)


def test_depth_and_options_follow_the_recipe_per_gpu(catalog):
    fp8 = catalog.model("qwen3.6-35b-a3b-fp8")
    spark = resolve(Request(fp8, catalog.gpu("dgx-spark"), speculative="mtp", vllm_version="0.28.0"))
    pro = resolve(Request(fp8, catalog.gpu("rtx-pro-6000-blackwell"), speculative="mtp", vllm_version="0.28.0"))
    # vllm-project/recipes Qwen3.6-35B-A3B: 3 tokens on Triton (GB10), 4 on flashinfer_cutlass (RTX PRO 6000)
    assert spec_config(spark.vllm_args) == {"method": "mtp", "num_speculative_tokens": 3, "moe_backend": "triton"}
    assert spec_config(pro.vllm_args) == {"method": "mtp", "num_speculative_tokens": 4, "moe_backend": "flashinfer_cutlass"}
    explicit = resolve(Request(fp8, catalog.gpu("dgx-spark"), speculative="mtp:2", vllm_version="0.28.0"))
    assert spec_config(explicit.vllm_args)["num_speculative_tokens"] == 2
    # the profiles' v0.18.0 image has no SpeculativeConfig.moe_backend: left out, said so
    old = resolve(Request(fp8, catalog.gpu("dgx-spark"), speculative="mtp"))
    assert spec_config(old.vllm_args) == {"method": "mtp", "num_speculative_tokens": 3}
    assert any("moe_backend" in w and "0.18.0" in w for w in old.warnings)
    gptq = resolve(Request(catalog.model("qwen3.5-35b-a3b-gptq-8bit"), catalog.gpu("rocm-4gpu"), speculative="mtp"))
    assert spec_config(gptq.vllm_args) == {"method": "mtp", "num_speculative_tokens": 1}  # the Qwen3.5 recipe's default


def test_off_removes_it_and_absent_leaves_the_flags_alone(catalog):
    recipe, cpu = catalog.model("tiny-cpu"), catalog.gpu("cpu")
    given = ["--speculative-config", '{"method": "mtp", "num_speculative_tokens": 1}']
    assert spec_config(resolve(Request(recipe, cpu, given)).vllm_args) is not None
    assert spec_config(resolve(Request(recipe, cpu, given, speculative="off")).vllm_args) is None
    assert spec_config(resolve(Request(recipe, cpu)).vllm_args) is None  # opt-in


def test_cpu_speculation_turns_prefix_caching_off(catalog):
    spec = resolve(Request(catalog.model("tiny-cpu"), catalog.gpu("cpu"), speculative="mtp"))
    assert "--no-enable-prefix-caching" in spec.vllm_args
    kept = resolve(Request(catalog.model("tiny-cpu"), catalog.gpu("cpu"), ["--enable-prefix-caching"], speculative="mtp"))
    assert "--no-enable-prefix-caching" not in kept.vllm_args  # the user's explicit choice stands


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_renders_the_speculative_config(cli, fmt):
    args = ["render", "qwen3.6-35b-a3b-fp8", "--gpu", "dgx-spark", "--format", fmt, "--speculative", "mtp:2"]
    if FORMATS[fmt] == "multinode":  # --nodes 2 is pipeline parallel 2, which MTP does not support: --force only
        refused = cli(*args)
        assert refused.exit_code == 2 and "does not support pipeline parallelism" in refused.stderr
        assert "--nodes 2 runs one pipeline stage per node" in refused.stderr
        args.append("--force")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "speculative-config" in result.stdout and "num_speculative_tokens" in result.stdout
    assert re.search(r"num_speculative_tokens\W{1,40}2\b", result.stdout)  # JSON, escaped JSON or YAML


def test_vllm_parser_accepts_mtp_commands_for_every_profile(catalog, vllm_python):
    argvs, pairs = [], []
    for recipe in catalog.models.values():
        if recipe.speculative is None:
            continue
        for gpu in recipe.profiles:
            for version in ("0.18.0", "0.32.0"):  # with and without the options the release knows
                spec = resolve(Request(recipe, catalog.gpu(gpu), speculative="mtp", vllm_version=version, force=True))
                assert spec_config(spec.vllm_args)["method"] == "mtp"
                argvs.append(["--model", spec.model, *spec.vllm_args])
                pairs.append((recipe.name, gpu, version))
    bad = ["--model", "x", "--speculative-config", '{"method": "mtp", "num_speculative_tokens": 2, "depth": 2}']
    verdicts = vllm_parse(argvs + [bad], vllm_python)
    assert dict(zip(pairs, verdicts[:-1])) == {p: None for p in pairs}
    assert "unknown key(s) depth" in verdicts[-1]  # vLLM's SpeculativeConfig fields are really consulted


def test_refused_below_the_minimum_release(catalog):
    recipe, gpu = catalog.model("qwen3.5-35b-a3b-nvfp4"), catalog.gpu("rtx-5090")
    with pytest.raises(UserError, match=r"needs vLLM >=0\.17\.0.*0\.16\.1"):
        resolve(Request(recipe, gpu, speculative="mtp", vllm_version="0.16.1"))
    forced = resolve(Request(recipe, gpu, speculative="mtp", vllm_version="0.16.1", force=True))
    assert any("speculative-vllm-version" in w for w in forced.warnings)


def test_refused_for_a_checkpoint_without_mtp_tensors(cli, tmp_path):
    embed = {"model.embed_tokens.weight": ("BF16", [64, 64], 64 * 64 * 2)}
    (tmp_path / "none").mkdir(), (tmp_path / "head").mkdir()
    write_safetensors(tmp_path / "none" / "model.safetensors", embed)
    result = cli("plan", "tiny-cpu", "--gpu", "cpu", "--model-path", str(tmp_path / "none"), "--speculative", "mtp")
    assert result.exit_code == 2
    assert "no mtp.* tensors" in result.output
    write_safetensors(tmp_path / "head" / "model.safetensors", {**embed, "mtp.fc.weight": ("BF16", [64, 128], 64 * 128 * 2)})
    ok = cli("plan", "tiny-cpu", "--gpu", "cpu", "--model-path", str(tmp_path / "head"), "--speculative", "mtp", "--json")
    assert ok.exit_code == 0, ok.output


def test_recipe_without_an_mtp_head_is_bad_input(catalog):
    recipe = catalog.model("tiny-cpu")
    bare = replace(recipe, speculative=None)
    with pytest.raises(UserError, match="no multi-token-prediction head"):
        resolve(Request(bare, catalog.gpu("cpu"), speculative="mtp"))


# --------------------------------------------------------------------------- planner


@pytest.mark.parametrize("log, depth", [("cpu-start-tiny-qwen3next-noprefix.log", 0), ("cpu-start-tiny-qwen3next-mtp2.log", 2)])
def test_cpu_start_with_and_without_mtp_predicted_exactly(catalog, log, depth):
    text = (LOGS / log).read_text()
    # these starts kept the GDN state in float32 (vLLM's CPU platform on an AVX-512 BF16 host): planned as such
    assert "Reset SSM cache type to float32" in text
    assert ("speculative_config=SpeculativeConfig(method='mtp'" in text) == bool(depth)
    real = parse_text(text)
    s = P.Settings(
        kv_cache_memory_bytes=real.kv_cache_memory_bytes,
        max_model_len=real.max_model_len,
        enforce_eager=True,
        enable_prefix_caching=False,
        num_speculative_tokens=depth,
        mamba_ssm_cache_dtype="float32",
    )
    plan = P.predict(catalog.model("tiny-cpu"), catalog.gpu("cpu"), s, vllm_version=real.vllm_version)
    assert plan.kv_cache_tokens_logged == real.kv_cache_tokens  # 190,650 without, 74,898 with MTP x 2
    assert round(plan.max_concurrency, 2) == real.max_concurrency
    lay = P.layout(catalog.model("tiny-cpu").architecture, cpu=True, num_spec=depth, ssm_dtype="float32")
    assert round(100 * (lay.page_bytes - lay.mamba_state_bytes) / lay.mamba_state_bytes, 2) == real.mamba_padding_pct
    assert ("Add 1 padding layers" in text) == (lay.mamba_groups * lay.layers_per_group - 3 == 1)
    assert (plan.budget["speculative"] > 0) == bool(depth)


def test_qwen35_mtp_layout(catalog):
    # one more conv row makes the GDN state exactly one 1056-token page; the MTP attention layer makes
    # 11 full layers, so groups of 11 (three mamba groups, 3 padding layers); a request pins 3 x (1 + N) blocks
    lay = P.layout(catalog.model("qwen3.5-35b-a3b-nvfp4").architecture, num_spec=1)
    assert (lay.block_size, lay.page_bytes, lay.mamba_state_bytes) == (1056, 2_162_688, 2_162_688)
    assert (lay.layers_per_group, lay.attn_groups, lay.mamba_groups, lay.mamba_blocks_per_request) == (11, 1, 3, 2)


def test_mtp_weights_from_the_architecture_equal_the_checkpoint(catalog, cli, tiny_model):
    assert P.mtp_weight_bytes(catalog.model("tiny-cpu").architecture) == weight_bytes(tiny_model)[1]
    ok = cli("plan", "tiny-cpu", "--gpu", "cpu", "--model-path", str(tiny_model), "--speculative", "mtp", "--json")
    assert ok.exit_code == 0, ok.output  # the generated checkpoint carries its MTP head
    # Qwen3.5-35B-A3B's BF16 head: ~1.7 GB (the NVIDIA NVFP4 checkpoint's MTP share, as measured)
    assert 1.6e9 < P.mtp_weight_bytes(catalog.model("qwen3.5-35b-a3b-nvfp4").architecture) < 1.75e9


def test_plan_json_shows_the_difference(cli):
    base = ["plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-pro-6000-blackwell", "--json"]
    off = json.loads(cli(*base).stdout)
    on_result = cli(*base, "--speculative", "mtp")
    assert on_result.exit_code == 0, on_result.output
    on = json.loads(on_result.stdout)
    assert off["speculative"] is None and off["budget"]["speculative"] == 0
    spec = on["speculative"]
    assert spec["num_speculative_tokens"] == 4 and spec["budget_mib"] == on["budget"]["speculative"] > 1000
    assert spec["without"]["kv_cache_tokens_logged"] == off["kv_cache_tokens_logged"]
    # the card pins 20600M of KV: with the draft's extra layer and state rows it no longer holds 1x native context
    assert on["kv_cache_tokens_logged"] < off["kv_cache_tokens_logged"] == 262_944
    assert on["budget"]["weights"] > off["budget"]["weights"]
