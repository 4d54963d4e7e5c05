"""Checkpoint directories as vLLM reads them, and the KV-cache layouts vLLM builds from them.

Real config.json files of public models (tests/data/configs, each with its source) are derived and planned for GPU
profiles; vLLM's layout rules are checked against figures worked out by hand from vLLM 0.32's source
(v1/kv_cache_interface.py, v1/core/kv_cache_utils.py, platforms/interface.py _align_hybrid_block_size)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from servectl.catalog.load import load_catalog
from servectl.checkpoint.derive import derive
from servectl.checkpoint.recipe import checkpoint_recipe
from servectl.checkpoint.source import SMALL_FILE_LIMIT, LocalDirectory
from servectl.errors import UserError
from servectl.hardware.cpu_features import CpuFeatures
from servectl.plan import planner as P
from servectl.plan.kvcache import LayoutRefused

from checkpoint_dirs import checkpoint_dir, header_only_safetensors

CONFIGS = Path(__file__).parent / "data" / "configs"
SOURCES = yaml.safe_load((CONFIGS / "sources.yaml").read_text())["configs"]
AVX512 = CpuFeatures(avx512_bf16=True, source="test: AVX-512 BF16 host")
AVX2 = CpuFeatures(source="test: AVX2 host")


def arch(name: str):
    return derive(LocalDirectory(CONFIGS / name)).architecture


def recipe(name: str):
    return checkpoint_recipe(LocalDirectory(CONFIGS / name), list(load_catalog().gpus))[0]


def test_every_real_config_names_its_source():
    assert set(SOURCES) == {p.name for p in CONFIGS.iterdir() if p.is_dir()}
    for name, entry in SOURCES.items():
        assert entry["source"] and entry["model"], name


# ------------------------------------------------------------------ derivation, as vLLM reads the file


@pytest.mark.parametrize(
    "name, layout, kv_heads, head, window, length",
    [
        ("llama-3.1-8b", {"full_attention": 32}, 8, 128, None, 131072),  # llama3 RoPE: no factor applied
        ("qwen2.5-7b", {"full_attention": 28}, 4, 128, None, 131072),  # use_sliding_window false drops the window
        ("qwen3-30b-a3b", {"full_attention": 48}, 4, 128, None, 40960),
        ("mistral-nemo-base-2407", {"full_attention": 40}, 8, 128, None, 128000),  # sliding_window null
        ("gemma-2-9b-it", {"sliding_attention": 21, "full_attention": 21}, 8, 256, 4096, 8192),
        ("gemma-3-27b-text", {"sliding_attention": 52, "full_attention": 10}, 16, 128, 1024, 131072),  # gemma3: no factor
        ("gpt-oss-20b", {"sliding_attention": 12, "full_attention": 12}, 8, 64, 128, 131072),  # yarn: no factor
        ("llama-4-scout-17b-16e-instruct", {"chunked_attention": 36, "full_attention": 12}, 8, 128, None, 10485760),
        ("nemotron-h-8b-base-8k", {"mamba": 24, "none": 24, "full_attention": 4}, 8, 128, None, 8192),
        ("falcon-h1-0.5b", {"attention+mamba": 36}, 2, 64, None, 16384),
    ],
)
def test_real_configs_derive_as_vllm_reads_them(name, layout, kv_heads, head, window, length):
    a = arch(name)
    counts = {k: a.kinds().count(k) for k in set(a.kinds())}
    assert counts == layout
    assert (a.num_kv_heads, a.head_dim, a.sliding_window, a.max_position_embeddings) == (kv_heads, head, window, length)


def test_layer_patterns_follow_each_familys_rule():
    assert arch("gemma-3-27b-text").kinds()[:6] == ["sliding_attention"] * 5 + ["full_attention"]  # pattern 6
    assert arch("gemma-2-9b-it").kinds()[:2] == ["sliding_attention", "full_attention"]
    assert arch("gpt-oss-20b").kinds()[:2] == ["sliding_attention", "full_attention"]  # even layers slide
    assert arch("llama-4-scout-17b-16e-instruct").kinds()[:4] == ["chunked_attention"] * 3 + ["full_attention"]
    assert arch("nemotron-h-8b-base-8k").kinds()[:8] == ["mamba", "none"] * 3 + ["mamba", "full_attention"]


def test_mla_and_state_geometry_from_the_models_own_fields():
    for name in ("kimi-k2-instruct", "glm-4.7-flash"):
        a = arch(name)
        assert (a.mla.kv_lora_rank, a.mla.qk_rope_head_dim) == (512, 64)
    m = arch("nemotron-h-8b-base-8k").mamba
    assert (m.kind, m.intermediate_size, m.n_groups, m.num_heads, m.head_dim, m.state_size, m.conv_kernel, m.ssm_dtype) == (
        "mamba2",
        128 * 64,
        8,
        128,
        64,
        128,
        4,
        "float32",
    )  # NemotronH's SSM state defaults to float32
    f = arch("falcon-h1-0.5b").mamba
    assert (f.intermediate_size, f.num_heads, f.head_dim, f.state_size) == (1024, 24, 64, 128)  # transformers' mamba_d_ssm


def test_every_figure_names_its_source(cli, tmp_path):
    r = cli("models", "show", str(checkpoint_dir("gemma-3-27b-text", tmp_path)), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    figs = {
        c["setting"].removeprefix("architecture."): c
        for c in d["derivation"]["choices"]
        if c["setting"].startswith("architecture.")
    }
    assert all(f["reason"] for f in figs.values())
    assert "sliding_window_pattern 6" in figs["layer_layout"]["reason"] and "default" in figs["layer_layout"]["reason"]
    assert (figs["sliding_window"]["value"], figs["sliding_window"]["reason"]) == ("1024", "config.json sliding_window")
    assert figs["head_dim"]["reason"] == "config.json head_dim"
    assert d["architecture"]["layer_types"].count("full_attention") == 10 and d["architecture"]["sliding_window"] == 1024
    llama = json.loads(cli("models", "show", str(checkpoint_dir("llama-3.1-8b", tmp_path)), "--json").stdout)
    head = next(c for c in llama["derivation"]["choices"] if c["setting"] == "architecture.head_dim")
    assert "hidden_size / num_attention_heads" in head["reason"]
    table = cli("models", "show", str(checkpoint_dir("nemotron-h-8b-base-8k", tmp_path)))
    assert table.exit_code == 0 and "hybrid_override_pattern" in table.stdout


# ------------------------------------------------------------------ GPU plans of the real configs


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_real_configs_plan_on_a_fitting_gpu(cli, tmp_path, name):
    plan = SOURCES[name]["plan"]
    path = str(checkpoint_dir(name, tmp_path))  # weights as the architecture implies them
    if plan is None:  # no catalog GPU holds it: vLLM's own refusal, one line
        r = cli("plan", path, "--gpu", "rtx-pro-6000-blackwell", "--vllm-version", "0.32.0")
        assert r.exit_code == 2 and "No available memory for the cache blocks" in r.stderr
        return
    r = cli("plan", path, "--gpu", plan["gpu"], "--vllm-version", "0.32.0", "--json", *plan["flags"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["vllm_starts"] and d["kv_cache_tokens_logged"] > 0 and d["layout"]
    # every KV-cache layer of the architecture the checkpoint derives (Falcon-H1: attention and Mamba in each layer)
    specs = sum(2 if k == "attention+mamba" else k != "none" for k in arch(name).kinds())
    assert len({i for g in d["layout"] for i in g["layers"]}) == specs
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
        "env",
        "fits",
        "vllm_starts",
        "warnings",
        "ignored_flags",
        "figures",
        "guide",
        "notes",
        "speculative",
        "layout",
    ):
        assert key in d
    for g in d["layout"]:
        assert set(g) >= {"kind", "layers", "page_bytes", "block_size", "blocks_per_request"}


# ------------------------------------------------------------------ vLLM's grouping, by hand


def test_gemma3_27b_groups_and_pinned_blocks():
    """52 sliding + 10 full layers, equal pages: groups of min(52, 10) = 10 layers -> 6 sliding groups (8 padding
    slots) + 1 full; a block id costs 10 pages; a sliding group pins cdiv(min(W - 1 + in_flight, L), 16) + 1."""
    a = arch("gemma-3-27b-text")
    page = 16 * 16 * (128 + 128) * 2
    lay = P.layout(a, in_flight=2 * 8192)  # GPU, async scheduling: 2 batches of 8192 tokens (0.26+)
    assert [g.kind for g in lay.groups] == ["sliding_window"] * 6 + ["full_attention"]
    assert (lay.layers_per_group, lay.padded_layers, lay.page_bytes, lay.block_bytes) == (10, 8, page, 10 * page)
    sliding = [i for i, k in enumerate(a.kinds()) if k == "sliding_attention"]
    assert list(lay.groups[1].layers) == sliding[1::6]  # layers[i::num_groups], as vLLM assigns them
    per_sw = math.ceil(min(1024 - 1 + 16384, 32768) / 16) + 1
    assert lay.blocks_per_request(32768) == 6 * per_sw + 32768 // 16
    old = P.layout(a, in_flight=8192)  # before 0.26: the window plus one batch
    assert old.blocks_per_request(32768) == 6 * (math.ceil((1023 + 8192) / 16) + 1) + 2048
    # a long request pins the windows' fixed share and grows only in the full group
    assert lay.longest_request(lay.blocks_per_request(65536)) == 65536


def test_in_flight_tokens_follow_the_release_and_the_platform(catalog):
    gpu, cpu = catalog.gpu("rtx-pro-6000-blackwell"), catalog.gpu("cpu")
    s = P.Settings()
    assert P.in_flight_tokens(gpu, s, "0.32.0", 8192) == 16384  # async scheduling: 2 batches
    assert P.in_flight_tokens(gpu, replace(s, async_scheduling=False), "0.32.0", 8192) == 8192
    assert P.in_flight_tokens(gpu, replace(s, pipeline_parallel_size=2), "0.32.0", 8192) == 16384  # PP batches
    assert P.in_flight_tokens(gpu, s, "0.25.1", 8192) == 8192
    assert P.in_flight_tokens(cpu, s, "0.32.0", 2048) == 2048  # the CPU build turns async scheduling off


def test_gpt_oss_and_llama4_hybrid_manager():
    lay = P.layout(arch("gpt-oss-20b"), in_flight=16384)
    assert [g.kind for g in lay.groups] == ["sliding_window", "full_attention"] and lay.layers_per_group == 12
    off = P.layout(arch("gpt-oss-20b"), hma=False)  # --disable-hybrid-kv-cache-manager: windows get every block
    assert [g.kind for g in off.groups] == ["full_attention"] and off.promoted
    assert off.blocks_per_request(32768) == 2048
    scout = arch("llama-4-scout-17b-16e-instruct")
    s = P.Settings(max_model_len=32768)
    assert P.hma_disabled(scout, s)[0]  # chunked local attention turns the manager off by default
    assert not P.hma_disabled(scout, replace(s, allow_chunked_local_with_hma=True))[0]
    on = P.layout(scout, in_flight=16384)
    assert [g.kind for g in on.groups] == ["chunked_local"] * 3 + ["full_attention"]
    assert on.groups[0].pages(32768, 16384) == math.ceil(min(8192 + 16384, 32768) / 16)


def test_mla_pages_one_latent_head():
    a = arch("glm-4.7-flash")
    assert P.layout(a).page_bytes == 16 * 576 * 2
    assert P.layout(a, kv_cache_dtype="fp8").page_bytes == 16 * 576
    assert P.layout(a, kv_cache_dtype="fp8_ds_mla").page_bytes == 16 * 656
    assert P.layout(a, tp=4).page_bytes == 16 * 576 * 2  # one head: tensor parallel does not split it


def test_nemotron_h_block_aligns_to_the_mamba2_state():
    """conv (k - 1, I + 2 G N) bf16 + temporal (H, hd, N) fp32; attention block 16 * cdiv(state, 16 * page/token)."""
    a = arch("nemotron-h-8b-base-8k")
    state = 3 * (8192 + 2 * 8 * 128) * 2 + 128 * 64 * 128 * 4
    lay = P.layout(a, prefix_caching=True, mamba2_checkpoint=True)
    assert lay.mamba_state_bytes == state == 4_255_744
    assert lay.block_size == 16 * math.ceil(state / (16 * 4096)) == 1040
    assert [g.kind for g in lay.groups] == ["mamba"] * 6 + ["full_attention"] and lay.layers_per_group == 4
    assert lay.blocks_per_request(8192) == 6 * 3 + math.ceil(8192 / 1040)  # 'align' + the prefill checkpoint (0.32)
    assert P.layout(a, prefix_caching=True).blocks_per_request(8192) == 6 * 2 + 8  # before 0.32
    tp2 = P.layout(a, tp=2)
    assert tp2.mamba_state_bytes == 3 * 5120 * 2 + 64 * 64 * 128 * 4


def test_hybrid_manager_off_refuses_mamba_layers():
    with pytest.raises(LayoutRefused, match="Failed to promote"):
        P.layout(arch("nemotron-h-8b-base-8k"), hma=False)


def test_disable_sliding_window_allocates_full_attention(catalog):
    r = recipe("gemma-2-9b-it")
    s = P.Settings(max_model_len=8192, kv_cache_memory_bytes=2**32, max_num_batched_tokens=512)
    windowed = P.predict(r, catalog.gpu("rtx-5090"), s, vllm_version="0.32.0")
    full = P.predict(r, catalog.gpu("rtx-5090"), replace(s, disable_sliding_window=True), vllm_version="0.32.0")
    assert [g["kind"] for g in full.layout] == ["full_attention"]
    assert windowed.max_concurrency > full.max_concurrency


# ------------------------------------------------------------------ what the CPU build cannot run (one line each)


def _with(tmp_path: Path, base: str, **changes) -> Path:
    out = tmp_path / base
    shutil.copytree(CONFIGS / base, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(changes)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_cpu_refusals_name_the_missing_kernel(tmp_path, catalog):
    cpu = catalog.gpu("cpu")
    cases = {
        "MLA kernels decode only a 576-wide latent": _with(tmp_path, "glm-4.7-flash", kv_lora_rank=256),
        "no sparse attention": _with(tmp_path, "kimi-k2-instruct", model_type="deepseek_v32", index_topk=2048),
        "no kernel for head size 16": _with(tmp_path, "llama-3.1-8b", hidden_size=512),
    }
    for why, path in cases.items():
        r = checkpoint_recipe(LocalDirectory(path), list(catalog.gpus))[0]
        with pytest.raises(P.VllmRefuses, match=why):
            P.predict(r, cpu, P.Settings(kv_cache_memory_bytes=2**26, max_model_len=2048), vllm_version="0.32.0", host=AVX512)
    llama = recipe("llama-3.1-8b")
    with pytest.raises(P.VllmRefuses, match="AVX-512 or AMX for an fp8"):
        P.predict(
            llama,
            cpu,
            P.Settings(kv_cache_dtype="fp8", kv_cache_memory_bytes=2**26, max_model_len=2048),
            vllm_version="0.32.0",
            host=AVX2,
        )
    with pytest.raises(P.VllmRefuses, match="no MLA backend"):
        P.predict(
            recipe("glm-4.7-flash"),
            cpu,
            P.Settings(kv_cache_memory_bytes=2**26, max_model_len=2048),
            vllm_version="0.27.1",
            host=AVX512,
        )
    ok = P.predict(
        recipe("glm-4.7-flash"),
        cpu,
        P.Settings(kv_cache_memory_bytes=2**28, max_model_len=2048),
        vllm_version="0.32.0",
        host=AVX512,
    )
    assert ok.block_size == 16  # CPU_MLA's block without AMX


def test_cli_refusal_is_one_line(cli, tmp_path):
    path = checkpoint_dir("glm-4.7-flash", tmp_path, kv_lora_rank=256)
    r = cli(
        "plan", str(path), "--gpu", "cpu", "--vllm-version", "0.32.0", "--kv-cache-memory-bytes", "64M", "--max-model-len", "2048"
    )
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# ------------------------------------------------------------------ bad input: one line, exit 2, bounded reads


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "has no config.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "is not valid JSON"),
        (lambda d: (d / "config.json").write_text("[1, 2]"), "is not a JSON object"),
        (lambda d: (d / "config.json").write_text('{"architectures": ["NoSuchForCausalLM"]}'), "has no num_hidden_layers"),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 2})
            ),
            "no num_hidden_layers",
        ),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps(
                    {
                        "architectures": ["Gemma2ForCausalLM"],
                        "hidden_size": 64,
                        "num_attention_heads": 2,
                        "num_hidden_layers": 4,
                        "layer_types": ["full_attention"],
                    }
                )
            ),
            "1 entries for 4 layers",
        ),
        (lambda d: (d / "config.json").write_bytes(b" " * (SMALL_FILE_LIMIT + 1)), "larger than"),
        (
            lambda d: (
                (d / "config.json").write_text((CONFIGS / "llama-3.1-8b" / "config.json").read_text()),
                (d / "model.safetensors").write_bytes((2**40).to_bytes(8, "little")),
            ),
            "implausible safetensors header",
        ),
    ],
)
def test_bad_checkpoints_are_one_line(cli, tmp_path, setup, message):
    d = tmp_path / "ckpt"
    d.mkdir()
    setup(d)
    for argv in (("models", "show", str(d)), ("plan", str(d), "--gpu", "rtx-5090", "--vllm-version", "0.32.0")):
        r = cli(*argv)
        assert r.exit_code == 2, (argv, r.output)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_missing_directory_is_not_an_unknown_recipe(cli, tmp_path):
    r = cli("plan", str(tmp_path / "nope"), "--gpu", "cpu")
    assert r.exit_code == 2 and "no such directory" in r.stderr
    assert cli("plan", "no-such-recipe", "--gpu", "cpu").exit_code == 2


def test_source_refuses_paths_outside_the_checkpoint(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "secret.json").write_text("{}")
    with pytest.raises(UserError, match="outside the checkpoint"):
        LocalDirectory(tmp_path / "ckpt").read_small("../secret.json")


def test_a_kv_block_larger_than_the_memory_left_is_vllms_one_request_refusal(cli, tmp_path):
    """Memory is left after the weights, but one KV block of every layer is larger still (a damaged or hostile
    head_dim): vLLM has no block to give and refuses the longest request; plan says so in one line, exit 2."""
    path = checkpoint_dir("llama-3.1-8b", tmp_path, head_dim=10**7)
    header_only_safetensors(path / "model.safetensors", 16 * 2**30)  # the 8B's weights, not what head_dim implies
    path = str(path)
    r = cli("plan", path, "--gpu", "rtx-5090", "--vllm-version", "0.32.0")
    assert r.exit_code == 2, r.output
    assert "less than one KV block" in r.stderr and "To serve at least one request" in r.stderr
    assert "exceed the budget by -" not in r.stderr


@pytest.mark.parametrize("value", ["1e400", "NaN", "-Infinity"])
def test_a_figure_that_is_no_finite_number_is_one_line(cli, tmp_path, value):
    path = checkpoint_dir("qwen3-30b-a3b", tmp_path)
    text = (path / "config.json").read_text()
    (path / "config.json").write_text(text.replace('"num_experts": 128', f'"num_experts": {value}'))
    assert f'"num_experts": {value}' in (path / "config.json").read_text()
    for argv in (["plan", str(path), "--gpu", "rtx-pro-6000-blackwell"], ["models", "show", str(path)]):
        r = cli(*argv)
        assert r.exit_code == 2, r.output
        assert "num_experts is" in r.stderr and "not a finite number" in r.stderr and "internal error" not in r.output


def test_infinity_where_transformers_writes_it_is_read(cli, tmp_path):
    """Mamba configs carry "time_step_limit": [0.0, Infinity] (transformers writes float('inf') so): JSON as
    transformers and vLLM read it, so the checkpoint plans."""
    path = checkpoint_dir("nemotron-h-8b-base-8k", tmp_path)
    cfg = (path / "config.json").read_text()
    (path / "config.json").write_text(cfg.rstrip().rstrip("}") + ', "time_step_limit": [0.0, Infinity]}')
    r = cli("plan", str(path), "--gpu", "rtx-pro-6000-blackwell", "--json")
    assert r.exit_code == 0, r.output
