"""vLLM argument lists: parsing, in-place overrides, size suffixes as vLLM reads them."""

import pytest

from servectl.vllmenv import args as va


def test_round_trip_keeps_tokens_exactly():
    tokens = ["--max-model-len", "auto", "--enable-auto-tool-choice", "--limit-mm-per-prompt", '{"image": 2}',
              "--limit-mm-per-prompt.video", "0"]
    assert va.to_tokens(va.parse_args(tokens)) == tokens


def test_equals_form_and_underscores_are_the_same_flag():
    flags = va.parse_args(["--max_model_len=4096"])
    assert va.get(flags, "--max-model-len") == "4096"


def test_merge_replaces_in_place_and_appends_new():
    base = va.parse_args(["--a", "1", "--b", "2"])
    merged = va.merge(base, va.parse_args(["--b", "3", "--c"]))
    assert va.to_tokens(merged) == ["--a", "1", "--b", "3", "--c"]
    assert va.to_tokens(base) == ["--a", "1", "--b", "2"]  # the input is not mutated


def test_value_that_is_not_a_flag_is_rejected():
    with pytest.raises(ValueError):
        va.parse_args(["4096"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20600M", 20600 * 2**20), ("64M", 67_108_864), ("32k", 32_000), ("1G", 2**30), ("2g", 2 * 10**9), ("123", 123)],
)
def test_sizes_follow_vllm_human_readable_int(text, expected):
    assert va.parse_size(text) == expected
