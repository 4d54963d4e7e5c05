"""The tiny-cpu model generator: real generation in the real vLLM environment (torch, transformers),
real greedy decoding with transformers, and the layout the catalog recipe declares."""

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from servectl.vllmenv import tinymodel
from servectl.errors import CheckFailed, UserError
from servectl.vllmenv.tinymodel import ensure_tiny_model

# Greedy decoding with transformers in the vLLM environment, for each branch of the chat template.
PROBE = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
tool = {"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
user = [{"role": "user", "content": "Who are you?"}]
call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
cases = {
    "thinking": dict(conversation=user),
    "no_thinking": dict(conversation=user, enable_thinking=False),
    "tools": dict(conversation=user, tools=[tool]),
    "after_tool": dict(conversation=user + [call, {"role": "tool", "content": "{\"sky\": \"sunny\"}"}], tools=[tool]),
}
out = {}
for name, kw in cases.items():
    prompt = tok.apply_chat_template(add_generation_prompt=True, tokenize=False, **kw)
    ids = tok(prompt, return_tensors="pt").input_ids
    gen = model.generate(ids, max_new_tokens=48, do_sample=False)
    out[name] = {"prompt": prompt, "last": tok.convert_ids_to_tokens(ids[0, -1].item()),
                 "completion": tok.decode(gen[0, ids.shape[1]:])}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory, vllm_python):
    root = tmp_path_factory.mktemp("models")
    return root, ensure_tiny_model("scripted", root=root)


@pytest.fixture(scope="module")
def decoded(generated, vllm_python):
    proc = subprocess.run([str(vllm_python), "-c", PROBE, str(generated[1])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_generated_once_into_place(generated):
    root, path = generated
    assert path.name == f"tiny-cpu-scripted-{tinymodel.generator_version()}"
    assert [p.name for p in root.iterdir()] == [path.name]  # no temp directory left behind
    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_tiny_model("scripted", root=root) == path
    assert weights.stat().st_mtime_ns == before  # cached: not generated again


def test_layout_matches_the_catalog_recipe(generated, catalog):
    config = json.loads((generated[1] / "config.json").read_text())
    arch = catalog.models["tiny-cpu"].architecture
    assert config["architectures"] == [arch.hf_architecture] == ["Qwen3NextForCausalLM"]
    assert config["layer_types"] == ["linear_attention"] * 3 + ["full_attention"]
    assert config["layer_types"].count("full_attention") == arch.full_attention_layers
    assert config["num_hidden_layers"] == arch.num_layers
    assert (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (
        arch.hidden_size,
        arch.num_attention_heads,
        arch.num_kv_heads,
        arch.head_dim,
    )
    # 32 crashes vLLM's CPU server on the first request
    assert config["linear_key_head_dim"] == config["linear_value_head_dim"] == arch.linear.key_head_dim == 64
    assert (config["num_experts"], config["num_experts_per_tok"]) == (arch.num_experts, arch.experts_per_token) == (4, 2)
    assert config["vocab_size"] == arch.vocab_size
    assert config["mtp_num_hidden_layers"] == arch.mtp_layers == 1
    assert config["max_position_embeddings"] == arch.max_position_embeddings
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"


def test_tokenizer_and_generation_config(generated):
    path = generated[1]
    tok = json.loads((path / "tokenizer.json").read_text())
    added = {t["content"]: t for t in tok["added_tokens"]}
    for token in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>"]:
        assert token in added, token
    tool_json = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert tool_json in added  # one token, so the hermes call is one step of the chain
    config = json.loads((path / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>"
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok["model"]["vocab"].get("<|im_end|>", added["<|im_end|>"]["id"])


def test_greedy_decoding_follows_the_script(decoded):
    thinking = decoded["thinking"]
    assert thinking["last"] == "<think>"
    assert thinking["completion"] == (
        "The user asked who I am. I will answer briefly.</think>"
        "I am a tiny test model served by vLLM through servectl. "
        "Every reply follows one short script.<|im_end|>"
    )
    assert decoded["no_thinking"]["last"] == "</think>"
    assert decoded["no_thinking"]["completion"].startswith("I am a tiny test model")
    assert "<think>" not in decoded["no_thinking"]["completion"]


def test_tools_branch_writes_a_hermes_call_and_a_summary_after_the_result(decoded):
    assert "get_weather" in decoded["tools"]["prompt"]  # the template renders the offered tools
    assert decoded["tools"]["completion"] == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><|im_end|>'
    )
    after = decoded["after_tool"]
    assert '<tool_response>{"sky": "sunny"}</tool_response>' in after["prompt"]
    assert '"arguments": {"city": "Paris"}' in after["prompt"]  # string arguments rendered as JSON, not quoted
    assert after["completion"] == "The weather tool reports sunny skies in Paris today.<|im_end|>"


def test_same_seed_same_weights(generated, tiny_model):
    again = tiny_model  # the user-cache copy the live tests serve, generated separately

    def digest(p: Path) -> str:
        return hashlib.sha256((p / "model.safetensors").read_bytes()).hexdigest()

    assert digest(again) == digest(generated[1])


def test_generator_imports_nothing_from_servectl():
    tree = ast.parse(Path(tinymodel.__file__).with_name("_tinymodel_gen.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.startswith("servectl")]


def test_no_vllm_environment_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no vLLM environment"):
        ensure_tiny_model("random", root=tmp_path, python=str(tmp_path / "no-python"))


def test_generation_failure_is_one_line_and_leaves_nothing(tmp_path):
    # servectl's own interpreter has no torch: the generator fails there, for real
    with pytest.raises(CheckFailed, match="generating the tiny model failed: .*ModuleNotFoundError"):
        ensure_tiny_model("random", root=tmp_path, python=sys.executable)
    assert list(tmp_path.iterdir()) == []


def test_family_names_are_read_from_the_generator_table():
    """`family:NAME` variants come from the generator's FAMILIES table, read without running it (however the
    table is written: annotated or not)."""
    assert {"llama", "gemma3", "deepseek-v3", "nemotron-h", "jamba"} <= set(tinymodel.family_names())
    with pytest.raises(UserError, match="no tiny checkpoint"):
        ensure_tiny_model("family:no-such-family")
