"""Any checkpoint as MODEL: the derived recipe (quantization and its guards, parsers from the family table checked
against the release's registry, sampling defaults, per-profile settings from the plan), recipes of one's own, and
the commands that take them. Checkpoints are tiny directories in the real file formats (tests/hubfixtures.py)."""

from __future__ import annotations

import json

import pytest

from hubfixtures import checkpoint_files, qwen3_config, write_dir
from servectl.catalog.parser_table import load_parser_table
from servectl.checkpoint import parsers
from servectl.checkpoint.quant import quantization
from servectl.checkpoint.ref import parse, recipe_name
from servectl.errors import UserError
from servectl.vllmenv import registries

R032 = registries.static("0.32.0")


@pytest.fixture(autouse=True)
def own_config(tmp_path, monkeypatch):
    """Recipes of one's own go to a private config folder; no vLLM environment is consulted for parsers."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("SERVECTL_VLLM_PYTHON", str(tmp_path / "no-vllm-here"))


# --------------------------------------------------------------------------- the parser table against vllm-project/recipes

CHATML = "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>"
HERMES = CHATML + '<tool_call>\n{"name": <function-name>, "arguments": <args>}\n</tool_call>'
THINK = "{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>{%- endif %}"
QWEN_XML = CHATML + "<tool_call>\n<function={{ name }}>\n<parameter={{ k }}>{{ v }}</parameter>\n</function>\n</tool_call>"
LLAMA31 = "<|start_header_id|>ipython<|end_header_id|>{{- '<|python_tag|>' + tool_call.name }}<|eot_id|>"
MISTRAL = "[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS][TOOL_CALLS]{{ calls }}"
DSV3 = "<｜User｜>{{ c }}<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
GLM = "[gMASK]<sop><|user|>{{ c }}<tool_call>{{ tc.name }}\n<arg_key>{{ k }}</arg_key><arg_value>{{ v }}</arg_value></tool_call>"


# (checkpoint name, model_type, chat template) -> (reasoning, tool) as vllm-project/recipes@8959cf6 publishes them
# (or vLLM's tool_calling docs where recipes has no file)
CASES = [
    ("Qwen/Qwen3-8B", "qwen3", HERMES + THINK, ("qwen3", "hermes")),
    ("Qwen/Qwen3-30B-A3B", "qwen3_moe", HERMES + THINK, ("qwen3", "hermes")),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", "qwen3_moe", HERMES + "{% if '</think>' in content %}", (None, "hermes")),
    ("Qwen/Qwen3-Coder-480B-A35B-Instruct", "qwen3_moe", QWEN_XML, (None, "qwen3_coder")),
    ("Qwen/Qwen3-Next-80B-A3B-Instruct", "qwen3_next", HERMES, (None, "hermes")),
    ("Qwen/Qwen3.5-35B-A3B", "qwen3_5_moe", QWEN_XML + THINK + "<think>\n", ("qwen3", "qwen3_coder")),
    ("Qwen/Qwen2.5-7B-Instruct", "qwen2", HERMES, (None, "hermes")),
    ("Qwen/QwQ-32B", "qwen2", HERMES + "<think>\n", ("deepseek_r1", "hermes")),
    ("openai/gpt-oss-20b", "gpt_oss", "<|start|>assistant<|channel|>analysis<|message|><|call|>", ("openai_gptoss", "openai")),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama", LLAMA31, (None, "llama3_json")),
    ("NousResearch/Hermes-3-Llama-3.1-8B", "llama", HERMES, (None, "hermes")),
    ("meta-llama/Llama-2-7b-chat-hf", "llama", "[INST] {{ c }} [/INST]", (None, None)),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4", "<|header_start|>", (None, "llama4_pythonic")),
    ("mistralai/Ministral-3-14B-Instruct-2512", "mistral3", MISTRAL, (None, "mistral")),
    ("mistralai/Ministral-3-8B-Reasoning-2512", "mistral3", MISTRAL + "[THINK]", ("mistral", "mistral")),
    ("mistralai/Mistral-7B-v0.1", "mistral", "", (None, None)),
    ("deepseek-ai/DeepSeek-V3", "deepseek_v3", DSV3, ("deepseek_v3", "deepseek_v3")),
    ("deepseek-ai/DeepSeek-R1", "deepseek_v3", DSV3 + "<think>\n", ("deepseek_r1", "deepseek_v3")),
    ("deepseek-ai/DeepSeek-V3.1", "deepseek_v3", DSV3, ("deepseek_v3", "deepseek_v31")),
    ("deepseek-ai/DeepSeek-V3.2", "deepseek_v32", "", ("deepseek_v3", "deepseek_v32")),
    ("moonshotai/Kimi-K2-Instruct", "kimi_k2", "<|tool_calls_section_begin|>", (None, "kimi_k2")),
    ("moonshotai/Kimi-K2-Thinking", "kimi_k2", "<|tool_calls_section_begin|><think>", ("kimi_k2", "kimi_k2")),
    ("zai-org/GLM-4.6", "glm4_moe", GLM, ("glm45", "glm45")),
    ("zai-org/GLM-4.7", "glm4_moe", GLM, ("glm45", "glm47")),
    ("zai-org/GLM-5", "glm_moe_dsa", GLM, ("glm45", "glm47")),
    ("MiniMaxAI/MiniMax-M2", "minimax_m2", "<minimax:tool_call><think>", ("minimax_m2", "minimax_m2")),
    # R loads nano_v3 from a plugin file; vLLM 0.32 registers nemotron_v3
    ("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "nemotron_h", QWEN_XML + "<think>", ("nemotron_v3", "qwen3_coder")),
    ("google/gemma-3-27b-it", "gemma3", "<start_of_turn>", (None, None)),
    ("google/gemma-4-31B-it", "gemma4", "<|turn>", ("gemma4", "gemma4")),
    ("ibm-granite/granite-4.0-h-small", "granitemoehybrid", HERMES, (None, "granite4")),
    ("ByteDance-Seed/Seed-OSS-36B-Instruct", "seed_oss", "<seed:tool_call>", (None, "seed_oss")),
    ("LiquidAI/LFM2.5-1.2B-Thinking", "lfm2", "<|tool_call_start|><think>", ("qwen3", "lfm2")),
    ("some-org/finetune-of-unknown-arch", "brand_new", HERMES + THINK + "<think>", ("qwen3", "hermes")),
    ("some-org/base-model", "qwen3", "", (None, None)),
]


@pytest.mark.parametrize("name,model_type,template,expected", CASES, ids=[c[0] for c in CASES])
def test_parsers_match_the_published_commands(name, model_type, template, expected):
    ck = parsers.Checkpoint(name=name, model_types=(model_type,), architecture=None, template=template)
    d = parsers.decide(load_parser_table(), ck, R032)
    assert (d.reasoning.parser, d.tool_call.parser) == expected, (d.reasoning.reason, d.tool_call.reason)
    for decision in (d.reasoning, d.tool_call):
        assert decision.reason  # every choice explained
        if decision.parser:
            assert R032.has(decision.kind, decision.parser)


def test_a_parser_the_release_lacks_is_left_out_with_a_warning_never_guessed():
    ck = parsers.Checkpoint(name="google/gemma-4-31B-it", model_types=("gemma4",), architecture=None, template="x")
    d = parsers.decide(load_parser_table(), ck, registries.static("0.18.0"))  # gemma4 parsers arrive in 0.19
    assert d.tool_call.parser is None and d.reasoning.parser is None
    assert "not registered in vLLM 0.18.0" in d.tool_call.warning
    ck = parsers.Checkpoint(
        name="nvidia/NVIDIA-Nemotron-Nano-9B-v2",
        model_types=("nemotron_h",),
        architecture=None,
        template="<TOOLCALL>[...]</TOOLCALL>",
    )
    d = parsers.decide(load_parser_table(), ck, R032)
    assert d.tool_call.parser is None and "nemotron_json" in d.tool_call.warning


def test_every_parser_the_table_names_exists_in_some_release():
    known = {k for k in ("tool_parsers", "reasoning_parsers") for k in [k]}
    for rule in load_parser_table():
        for kind, table in (("reasoning", "reasoning_parsers"), ("tool_call", "tool_parsers")):
            choice = getattr(rule, kind)
            for name in choice.parsers if choice else []:
                plugin = name in ("nano_v3", "nemotron_json")  # plugins R loads from files (named, left out when absent)
                assert plugin or registries.first_release_with(table, name), (rule.name, name)
    assert known


# --------------------------------------------------------------------------- quantization from the config


@pytest.mark.parametrize(
    "qc,expected",
    [
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8"),
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "gptq-int4"),
        ({"quant_method": "gptq", "bits": 8}, "gptq-int8"),
        ({"quant_method": "awq", "bits": 4}, "awq-int4"),
        ({"quant_method": "mxfp4"}, "mxfp4"),
        ({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "config_groups": {}}, "nvfp4"),
        (
            {"quant_method": "compressed-tensors", "config_groups": {"g": {"format": "mxfp4-pack-quantized", "weights": {}}}},
            "mxfp4",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "format": "float-quantized",
                "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            "fp8",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "format": "pack-quantized",
                "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "group_size": 128}}},
            },
            "int4",
        ),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4"),
    ],
)
def test_quantization_from_quantization_config(qc, expected):
    q = quantization({"quantization_config": qc, "torch_dtype": "bfloat16"})
    assert q.quantization == expected and q.reason
    assert (q.required_dtype == "float16") == expected.startswith("gptq")


def test_quantization_modelopt_file_dtype_and_unsupported():
    assert quantization({"torch_dtype": "float16"}, {"quantization": {"quant_algo": "FP8"}}).quantization == "fp8"
    assert quantization({"dtype": "float32"}).quantization == "bf16"
    assert quantization({"torch_dtype": "float16"}).quantization == "fp16"
    with pytest.raises(UserError, match="bitsandbytes"):
        quantization({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}})


# --------------------------------------------------------------------------- MODEL strings


def test_model_refs(tmp_path):
    assert parse("Qwen/Qwen3-8B").repo == "Qwen/Qwen3-8B"
    r = parse("Qwen/Qwen3-8B@refs/pr/1")
    assert (r.repo, r.revision) == ("Qwen/Qwen3-8B", "refs/pr/1")
    assert recipe_name(r) == "qwen3-8b"
    d = write_dir(tmp_path / "My_Llama 3", checkpoint_files())
    assert parse(str(d)).kind == "path" and recipe_name(parse(str(d))) == "my-llama-3"
    for bad in ("qwen3", "a/b/c", "-x/y", "org/na..me", "org/name@../../etc"):
        try:
            assert parse(bad) is None
        except UserError:
            pass
    with pytest.raises(UserError):
        parse("./does-not-exist")
    # names the OS cannot look up (longer than a file name may be): no repo id, no directory; never an OSError
    assert parse("org/" + "a" * 5000) is None
    for path in ("/" + "b" * 5000, "./" + "c/" * 3000):
        with pytest.raises(UserError, match="no such directory"):
            parse(path)


# --------------------------------------------------------------------------- derived recipes through the commands


def make(tmp_path, name="ckpt", **kw):
    return str(write_dir(tmp_path / name, checkpoint_files(**kw)))


def test_models_show_explains_every_choice(cli, tmp_path):
    path = make(tmp_path, generation={"temperature": 0.7, "top_p": 0.8})
    res = cli("models", "show", path, "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    settings = {c["setting"]: c for c in doc["derivation"]["choices"]}
    for key in (
        "quantization",
        "parsers.reasoning",
        "parsers.tool_call",
        "sampling_defaults",
        "weights_gib",
        "profiles.rtx-5090",
        "profiles.cpu",
        "architecture.num_kv_heads",
    ):
        assert settings[key]["reason"], key
    assert doc["model_path"] == path and doc["source"] == "directory"
    assert "--max-model-len 40960" == settings["profiles.rtx-5090"]["value"]
    text = cli("models", "show", path)
    assert text.exit_code == 0 and "parsers.tool_call" in text.stdout and "servectl models add" in text.stdout


def test_fp4_weights_never_on_rocm_or_cpu_and_need_blackwell(cli, tmp_path):
    cfg = qwen3_config(
        quantization_config={"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "config_groups": {}}
    )
    path = make(tmp_path, config=cfg)
    doc = json.loads(cli("models", "show", path, "--json").stdout)
    assert doc["quantization"] == "nvfp4"
    assert set(doc["profiles"]) == {"rtx-5090", "rtx-pro-6000-blackwell", "dgx-spark"}
    reasons = {c["setting"]: c["reason"] for c in doc["derivation"]["choices"]}
    assert "ROCm" in reasons["profiles.rocm-4gpu"] and "left out" in reasons["profiles.cpu"]
    res = cli("render", path, "--gpu", "rocm-4gpu", "--force")
    assert res.exit_code == 2 and "no kernels for this FP4 checkpoint format on ROCm" in res.stderr


def test_gptq_on_rocm_renders_float16(cli, tmp_path):
    path = make(tmp_path, config=qwen3_config(quantization_config={"quant_method": "gptq", "bits": 4}))
    res = cli("render", path, "--gpu", "rocm-4gpu")
    assert res.exit_code == 0, res.stderr
    assert "--dtype float16" in res.stdout
    res = cli("render", path, "--gpu", "rocm-4gpu", "--", "--dtype", "bfloat16")
    assert res.exit_code == 2 and "GPTQ on ROCm needs --dtype float16" in res.stderr


def hybrid_config():
    return qwen3_config(
        architectures=["Qwen3NextForCausalLM"],
        model_type="qwen3_next",
        num_hidden_layers=4,
        layer_types=["linear_attention"] * 3 + ["full_attention"],
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_conv_kernel_dim=4,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=32,
    )


def test_fp8_kv_cache_refused_on_a_hybrid_model(cli, tmp_path):
    path = make(tmp_path, config=hybrid_config())
    res = cli("render", path, "--gpu", "rtx-5090", "--", "--kv-cache-dtype", "fp8")
    assert res.exit_code == 2 and "gibberish" in res.stderr
    assert cli("render", path, "--gpu", "rtx-5090", "--", "--kv-cache-dtype", "auto").exit_code == 0


def test_max_model_len_from_the_plan_when_the_native_context_does_not_fit(cli, tmp_path):
    """~26 GiB of BF16 weights (header only) on the 32 GB RTX 5090: the longest request that fits, rounded down;
    on the 4-GPU ROCm profile the weights are split by tensor parallelism."""
    weights = {"model.embed_tokens.weight": ("BF16", [256, 64]), "model.big.weight": ("BF16", [13, 1024, 1024, 1024])}
    cfg = qwen3_config(max_position_embeddings=131072, num_hidden_layers=64, num_key_value_heads=4, head_dim=128)
    files = checkpoint_files(config=cfg, weights=weights, weight_data=False)
    path = str(write_dir(tmp_path / "big", files))
    doc = json.loads(cli("models", "show", path, "--json").stdout)
    args = doc["profiles"]["rtx-5090"]["args"]
    mml = int(args[args.index("--max-model-len") + 1])
    assert 0 < mml < 131072 and mml % 1024 == 0
    assert doc["profiles"]["rtx-pro-6000-blackwell"]["args"] == ["--max-model-len", "131072"]
    assert "cpu" not in doc["profiles"]  # 26 GiB do not fit the cpu profile's 8
    assert doc["profiles"]["rocm-4gpu"]["args"][:2] == ["--tensor-parallel-size", "4"]
    plan = json.loads(cli("plan", path, "--gpu", "rtx-5090", "--json").stdout)
    assert plan["fits"] and plan["max_model_len"] == mml


def test_sliding_windows_are_sized_and_unknown_families_refused_in_one_line(cli, tmp_path):
    # a family the KV-cache rules know: its window is planned (every layer slides: use_sliding_window)
    path = make(tmp_path, config=qwen3_config(sliding_window=4096, use_sliding_window=True, head_dim=32))
    doc = json.loads(cli("models", "show", path, "--json").stdout)
    assert doc["architecture"]["sliding_window"] == 4096 and set(doc["architecture"]["layer_types"]) == {"sliding_attention"}
    plan = json.loads(cli("plan", path, "--gpu", "rtx-5090", "--max-model-len", "32768", "--json").stdout)
    assert [g["kind"] for g in plan["layout"]] == ["sliding_window"]
    # an architecture outside those families: full attention is read generically, a window is refused
    other = make(
        tmp_path,
        name="other",
        config=qwen3_config(architectures=["FooForCausalLM"], model_type="foo", sliding_window=4096, use_sliding_window=True),
    )
    res = cli("models", "show", other)
    assert res.exit_code == 2 and "sliding-window" in res.stderr and "Traceback" not in res.stderr


def test_no_chat_template_warns_and_sets_no_parser(cli, tmp_path):
    path = make(tmp_path, template=None)
    res = cli("models", "show", path, "--json")
    doc = json.loads(res.stdout)
    assert doc["parsers"] == {"reasoning": None, "tool_call": None}
    assert any("no chat template" in w for w in doc["derivation"]["warnings"])


def test_card_is_for_curated_recipes_alone(cli, tmp_path):
    res = cli("render", make(tmp_path), "--gpu", "rtx-5090", "--card")
    assert res.exit_code == 2 and "curated recipe's published command" in res.stderr


# --------------------------------------------------------------------------- recipes of one's own


def test_models_add_list_show_render_a_recipe_of_ones_own(cli, tmp_path):
    path = make(tmp_path, name="My-Model")
    res = cli("models", "add", path, "--json")
    assert res.exit_code == 0, res.stderr
    added = json.loads(res.stdout)
    assert added["name"] == "my-model" and added["file"].endswith("servectl/recipes/my-model.yaml")
    listed = {m["name"]: m for m in json.loads(cli("models", "list", "--json").stdout)}
    assert listed["my-model"]["source"] == "user" and listed["tiny-cpu"]["source"] == "curated"
    assert cli("models", "add", path).exit_code == 2  # exists: --force replaces
    assert cli("models", "add", path, "--force").exit_code == 0
    # the user edits a profile's flags: they are what renders
    from pathlib import Path

    f = Path(added["file"])
    f.write_text(f.read_text().replace("- '40960'", "- '8192'"))
    res = cli("render", "my-model", "--gpu", "rtx-5090")
    assert res.exit_code == 0 and "--max-model-len 8192" in res.stdout and f"vllm serve {path} " in res.stdout
    assert cli("render", "my-model", "--gpu", "rtx-5090", "--card").exit_code == 2


def test_a_broken_recipe_of_ones_own_is_one_line_with_file_and_line(cli, tmp_path):
    path = make(tmp_path)
    assert cli("models", "add", path, "--name", "mine").exit_code == 0
    f = tmp_path / "config" / "servectl" / "recipes" / "mine.yaml"
    lines = f.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith("quantization:"))
    lines[at] = lines[at].replace("bf16", "int3")
    f.write_text("\n".join(lines) + "\n")
    res = cli("render", "mine", "--gpu", "cpu")
    assert res.exit_code == 2
    assert f"{f}:{at + 1}: field recipe.quantization" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    listing = cli("models", "list")
    assert listing.exit_code == 2 and f"{f}:{at + 1}" in listing.stderr and "tiny-cpu" in listing.stdout
    # other recipes keep working
    assert cli("render", "tiny-cpu", "--gpu", "cpu").exit_code == 0


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: t.replace("name: mine", "name: tiny-cpu", 1), "differs from the file name"),
        (
            lambda t: t.replace("  profiles:\n", "  card: {source: x}\n  profiles:\n", 1),
            "model-card settings belong to the curated",
        ),
        (lambda t: t.replace("    rtx-5090:\n", "    rtx-5900:\n", 1), "did you mean 'rtx-5090'"),
    ],
)
def test_recipe_rules_beyond_the_schema(cli, tmp_path, edit, message):
    assert cli("models", "add", make(tmp_path), "--name", "mine").exit_code == 0
    f = tmp_path / "config" / "servectl" / "recipes" / "mine.yaml"
    f.write_text(edit(f.read_text()))
    res = cli("render", "mine", "--gpu", "cpu")
    assert res.exit_code == 2 and message in res.stderr and str(f) in res.stderr


def test_add_refuses_curated_names_and_bad_names(cli, tmp_path):
    path = make(tmp_path)
    assert cli("models", "add", path, "--name", "tiny-cpu").exit_code == 2
    assert cli("models", "add", path, "--name", "Bad Name").exit_code == 2
    assert cli("models", "add", "no-such-thing").exit_code == 2


def test_check_expectations_follow_the_recipe(tmp_path):
    from servectl.launch.report import check_expectations

    path = make(tmp_path, template=QWEN_XML)  # tools, no thinking
    e = check_expectations("http://127.0.0.1:9", path)
    assert e.tools is True and e.reasoning is False and e.served_name == "ckpt"
    assert check_expectations("http://127.0.0.1:9", "tiny-cpu") is None  # the catalog answers by itself


def test_tiny_family_generator_names_its_families():
    from tiny_checkpoints import ensure_tiny_family, scripted_family_names

    assert {"llama", "granite", "qwen3-moe"} <= set(scripted_family_names())
    with pytest.raises(UserError, match="no tiny checkpoint of family"):
        ensure_tiny_family("no-such-family")


def test_awq_runs_on_the_nvidia_profiles_only(cli, tmp_path):
    path = make(tmp_path, config=qwen3_config(quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128}))
    doc = json.loads(cli("models", "show", path, "--json").stdout)
    assert doc["quantization"] == "awq-int4"
    assert set(doc["profiles"]) == {"rtx-5090", "rtx-pro-6000-blackwell", "dgx-spark"}
