"""The gibberish detector on real samples: real random-model output, real FP8-KV collapse quoted
from public vLLM issues, and real language (tests/data/sanity/samples.json cites each source)."""

import json
from pathlib import Path

import pytest

from servectl.verify.sanity import assess

SAMPLES = json.loads((Path(__file__).parent / "data" / "sanity" / "samples.json").read_text())


@pytest.mark.parametrize("sample", SAMPLES["gibberish"], ids=lambda s: s["source"][:50])
def test_gibberish_is_flagged(sample):
    verdict = assess(sample["text"])
    assert not verdict.ok
    assert verdict.reasons


@pytest.mark.parametrize("sample", SAMPLES["language"], ids=lambda s: s["text"][:30])
def test_language_passes(sample):
    verdict = assess(sample["text"])
    assert verdict.ok, verdict.reasons


def test_random_model_output_is_salad_even_without_broken_bytes():
    """The random model's text trips the salad signal on its own, not only the replacement characters."""
    text = SAMPLES["gibberish"][0]["text"].replace("\ufffd", "")
    assert any("token salad" in r for r in assess(text).reasons)


def test_word_loop_is_flagged():
    assert any("repeated" in r for r in assess("the " * 12).reasons)


def test_mixed_scripts_are_flagged():
    verdict = assess("Hello мир 世界 Ελλάδα world again and again here")
    assert any("writing systems" in r for r in verdict.reasons)


def test_empty_output_is_not_language():
    assert not assess("   ").ok
