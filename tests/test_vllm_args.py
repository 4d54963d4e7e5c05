"""vLLM argument lists: parsing, in-place overrides, size suffixes as vLLM reads them."""

import pytest

from servectl.vllmenv import args as va


def test_round_trip_keeps_tokens_exactly():
    tokens = [
        "--max-model-len",
        "auto",
        "--enable-auto-tool-choice",
        "--limit-mm-per-prompt",
        '{"image": 2}',
        "--limit-mm-per-prompt.video",
        "0",
    ]
    assert va.to_tokens(va.parse_args(tokens)) == tokens


def test_equals_form_and_underscores_are_the_same_flag():
    flags = va.parse_args(["--max_model_len=4096"])
    assert va.get(flags, "--max-model-len") == "4096"


def test_merge_replaces_in_place_and_appends_new():
    base = va.parse_args(["--zz-a", "1", "--zz-b", "2"])
    merged = va.merge(base, va.parse_args(["--zz-b", "3", "--zz-c"]))
    assert va.to_tokens(merged) == ["--zz-a", "1", "--zz-b", "3", "--zz-c"]
    assert va.to_tokens(base) == ["--zz-a", "1", "--zz-b", "2"]  # the input is not mutated


def test_value_that_is_not_a_flag_is_rejected():
    with pytest.raises(ValueError):
        va.parse_args(["4096"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20600M", 20600 * 2**20), ("64M", 67_108_864), ("32k", 32_000), ("1G", 2**30), ("2g", 2 * 10**9), ("123", 123)],
)
def test_sizes_follow_vllm_human_readable_int(text, expected):
    assert va.parse_size(text) == expected


# --------------------------------------------------------------------------- canonical forms, as vLLM's parser reads them


@pytest.mark.parametrize(
    ("tokens", "canonical"),
    [
        (["-tp", "8"], ["--tensor-parallel-size", "8"]),
        (["-tp=8"], ["--tensor-parallel-size", "8"]),
        (["--tensor_parallel_size=2"], ["--tensor-parallel-size", "2"]),
        (["-pp", "2", "-dp", "1"], ["--pipeline-parallel-size", "2", "--data-parallel-size", "1"]),
        (["-O3"], ["--optimization-level", "3"]),
        (["-ep"], ["--enable-expert-parallel"]),
        (["-q", "gptq"], ["--quantization", "gptq"]),
        (["--compilation_config.mode=3"], ["--compilation-config.mode", "3"]),
        (["-cc", '{"mode": 3}'], ["--compilation-config", '{"mode": 3}']),
        (["--served-model-name", "a", "b", "--enforce-eager"], ["--served-model-name", "a", "b", "--enforce-eager"]),
        (["--no-enable-prefix-caching"], ["--no-enable-prefix-caching"]),
        (["--max-model-len", "auto"], ["--max-model-len", "auto"]),
    ],
)
def test_aliases_equals_and_dotted_forms_are_canonical(tokens, canonical):
    assert va.to_tokens(va.parse_args(tokens)) == canonical


def test_the_guards_and_planner_see_tp_through_its_alias():
    assert va.get(va.parse_args(["-tp", "4"]), "--tensor-parallel-size") == "4"


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["--tensor-parallel-size", "two"], "--tensor-parallel-size expects an integer, got 'two'"),
        (["--max-model-len", "lots"], "--max-model-len expects a size"),
        (["--enforce-eager=1"], "--enforce-eager takes no value"),
        (["-tp"], "--tensor-parallel-size needs a value"),
    ],
)
def test_values_vllm_would_refuse_are_refused_with_its_option_name(tokens, message):
    with pytest.raises(ValueError, match=message):
        va.parse_args(tokens)


def test_unknown_flags_are_named_with_close_matches():
    flags = va.parse_args(["--max-num-seqz", "64", "--speculativ-config", "mtp", "--enforce-eager"])
    assert va.unknown_flags(flags) == ["--max-num-seqz", "--speculativ-config"]
    assert "--max-num-seqs" in va.bundled_options().suggest("--max-num-seqz")


def test_abbreviations_are_read_as_vllms_argparse_reads_them():
    # allow_abbrev (argparse's default, kept by FlexibleArgumentParser): a unique prefix is the option,
    # an ambiguous one is refused (vLLM 0.32: "ambiguous option: --api could match --api-server-count, --api-key")
    flags = va.parse_args(["--max-num-seq", "4", "--api-ke", "k", "--max_model", "100", "--no-enable-prefix"])
    assert [f.name for f in flags] == ["--max-num-seqs", "--api-key", "--max-model-len", "--no-enable-prefix-caching"]
    with pytest.raises(ValueError, match="ambiguous option --api: could match --api-key, --api-server-count"):
        va.parse_args(["--api", "k"])


def test_bundled_table_is_what_the_vllm_environment_reports(tmp_path, monkeypatch, vllm_python):
    """The shipped table is vLLM's own parser output: the real CPU environment gives the same options."""
    from servectl.vllmenv.vllm_parser import serve_options

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    live = serve_options(vllm_python)
    bundled = va.bundled_options()
    assert live.vllm == bundled.vllm
    assert live.options == bundled.options
