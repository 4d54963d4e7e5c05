"""Known bugs reproduced with the released code on the vLLM CPU build, before and after servectl's patch.

For each parser bug the affected release's own files come from its wheel (tests/wheel_members.py); a copy is
patched with `servectl patch apply` (the real engine, on a site-packages folder holding those files and the
release's METADATA). tests/vllm_release_code.py then runs the release's parser code in the CPU environment's
interpreter (one process for every scenario: importing vLLM is the slow part) with the tiny test model's real
tokenizer, on the unpatched and on the patched files. The bug must show on the first and be gone on the second.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import wheel_members
from servectl.vllmenv import patches
from servectl.vllmenv.pyenv import from_site_packages

HERE = Path(__file__).resolve().parent

# scenario -> (patch id, release, files the scenario loads besides the patched ones)
SCENARIOS = {
    "reasoning_tool_call": (
        "qwen3-reasoning-tool-call-end",
        "0.19.1",
        ["reasoning/abs_reasoning_parsers.py", "reasoning/basic_parsers.py"],
    ),
    "coder_anyof": ("qwen3coder-anyof-params", "0.17.1", []),
    "coder_malformed": ("qwen3coder-malformed-parameter", "0.20.2", []),
    "engine_whitespace": ("qwen3-parser-keeps-whitespace", "0.25.1", []),
    "shared_engine": ("parser-shared-engine-thinking", "0.28.0", []),
}


def release_tree(version: str, rels: list[str], into: Path) -> Path:
    names = [f"vllm/{r}" for r in rels] + [f"vllm-{version}.dist-info/METADATA"]
    try:
        files = wheel_members.members(version, names)
    except wheel_members.Unreachable as exc:
        pytest.skip(str(exc))
    for name, text in files.items():
        assert text is not None, f"{name} is not in the {version} wheel"
        path = into / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return into


@pytest.fixture(scope="module")
def results(tmp_path_factory, vllm_python, tiny_model):
    python, tokenizer = vllm_python, tiny_model
    args = []
    for scenario, (pid, version, extra) in SCENARIOS.items():
        patch = patches.pick([pid])[0]
        rels = patches.paths(patch) + extra
        base = tmp_path_factory.mktemp(scenario)
        released = release_tree(version, rels, base / "released")
        fixed = release_tree(version, rels, base / "patched")
        (out,) = patches.apply(from_site_packages(fixed), [pid])
        assert out.action == "applied" and out.verified, out.message
        args += [f"{scenario}={released}", f"{scenario}={fixed}"]
    proc = subprocess.run(
        [str(python), str(HERE / "vllm_release_code.py"), str(tokenizer), *args], capture_output=True, text=True, timeout=900
    )
    found = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(found) == len(args), proc.stdout[-3000:] + proc.stderr[-3000:]
    return {(r["scenario"], "patched" if r["root"].endswith("patched") else "released"): r for r in found}


def test_tool_call_inside_unclosed_think(results):
    """0.19.1: the whole reply is reasoning and the tool call is lost; patched: the call is content."""
    before, after = results["reasoning_tool_call", "released"], results["reasoning_tool_call", "patched"]
    assert before["content"] is None and "<tool_call>" in before["reasoning"] and before["reasoning_end"] is False
    assert after["reasoning"] == "I should look the weather up.\n"
    assert after["content"].startswith("<tool_call>") and after["reasoning_end"] is True


def test_anyof_argument_is_an_object(results):
    """0.17.1: {"city": "Paris"} arrives double-encoded as a string; patched: as an object."""
    before, after = results["coder_anyof", "released"], results["coder_anyof", "patched"]
    assert before["calls"][0]["arguments"] == {"location": '{"city": "Paris"}'}
    assert after["calls"][0]["arguments"] == {"location": {"city": "Paris"}}


def test_malformed_parameter_keeps_the_call(results):
    """0.20.2: one parameter without '>' loses the whole call (ValueError); patched: the good parameter stays."""
    before, after = results["coder_malformed", "released"], results["coder_malformed", "patched"]
    assert before["tools_called"] is False and before["content"].startswith("<tool_call>")
    assert after["tools_called"] is True and after["calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]


def test_engine_keeps_argument_whitespace(results):
    """0.25.1: the indentation of an exact-match edit argument is stripped; patched: one wrapping newline only."""
    before, after = results["engine_whitespace", "released"], results["engine_whitespace", "patched"]
    assert before["arguments"] == {"old_string": "if x:\n        return 1"}
    assert after["arguments"] == {"old_string": "    if x:\n        return 1"}


def test_qwen3_parsers_are_composed(results):
    """0.28.0: qwen3 + qwen3_coder collapse into the raw engine (request kwargs dropped); patched: composed."""
    before, after = results["shared_engine", "released"], results["shared_engine", "patched"]
    assert before["raw_engine"] is True
    assert after["raw_engine"] is False
