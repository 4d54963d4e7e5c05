"""What each vLLM release registers (servectl/vllmenv/vllm_registries.json, read from the releases' own sources by
scripts/vllm-registries), checked against the registries of the real vLLM CPU environment."""

from __future__ import annotations

import pytest

from servectl.vllmenv import registries


def test_table_lookups():
    r18, r32 = registries.static("0.18.0"), registries.static("0.32.0+cpu")
    assert r32.vllm == "0.32.0"
    assert "hermes" in r18.tool_parsers and "qwen3_coder" in r18.tool_parsers and "qwen3" in r18.reasoning_parsers
    assert "gemma4" not in r18.tool_parsers and "gemma4" in r32.tool_parsers
    assert "Qwen3_5MoeForConditionalGeneration" in r32.architectures
    assert registries.static("0.99.0") is None  # a release the table does not hold: nothing assumed
    assert registries.first_release_with("tool_parsers", "gemma4") == "0.19.0"
    assert registries.first_release_with("tool_parsers", "no-such-parser") is None


@pytest.mark.server
@pytest.mark.slow
def test_table_matches_the_installed_vllm(tmp_path, monkeypatch):
    """The static table and vLLM's own registries (ToolParserManager, ReasoningParserManager, ModelRegistry) asked
    in the vLLM environment agree name for name for the release installed there."""
    from servectl.vllmenv.location import find_vllm_python

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # ask the environment, not a cached answer
    live = registries.from_environment(find_vllm_python())
    table = registries.static(live.vllm)
    assert table is not None, f"vLLM {live.vllm} is not in the table: run scripts/vllm-registries"
    assert live.tool_parsers == table.tool_parsers
    assert live.reasoning_parsers == table.reasoning_parsers
    assert live.architectures == table.architectures
