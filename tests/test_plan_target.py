"""Which vLLM and which host a plan is for: the version table, image tags, the environment, CPU features."""

import json

import pytest

from servectl.catalog import versions as vv
from servectl.errors import UserError
from servectl.hardware.cpu_features import parse_cpuinfo, parse_torch_probe


@pytest.mark.parametrize(
    "image, version",
    [
        ("vllm/vllm-openai:v0.18.0-cu130", "0.18.0"),
        ("servectl/vllm-cpu:0.32.0", "0.32.0"),
        ("vllm/vllm-openai:v0.20.2rc1", "0.20.2rc1"),
        ("rocm/vllm:latest", None),
        ("localhost:5000/vllm", None),
        ("vllm/vllm-openai@sha256:" + "0" * 64, None),
    ],
)
def test_version_from_image_tag(image, version):
    assert vv.version_from_image(image) == version


def test_the_version_that_runs():
    cpu_env = ("vllm-cpu", "0.32.0")
    assert vv.that_runs(override="0.19.1", installed=cpu_env, image="servectl/vllm-cpu:0.31.0", cpu_profile=True)[0] == "0.19.1"
    assert vv.that_runs(installed=cpu_env, image="servectl/vllm-cpu:0.31.0", cpu_profile=True)[0] == "0.32.0"
    # a CPU build here does not run a GPU profile's plan: the image does
    assert vv.that_runs(installed=cpu_env, image="vllm/vllm-openai:v0.18.0-cu130") == (
        "0.18.0",
        "the image vllm/vllm-openai:v0.18.0-cu130",
    )
    version, why = vv.that_runs(image="rocm/vllm:latest")
    assert version == vv.NEWEST_READ and "--vllm-version" in why
    with pytest.raises(UserError):
        vv.that_runs(override="latest")


@pytest.mark.parametrize(
    "name, below, at",
    [
        ("null_block_reserved_in_check", "0.28.0", "0.29.0"),
        ("max_model_len_check_sums_groups", "0.18.0", "0.19.0"),
        ("kv_tokens_logged_from_concurrency", "0.19.1", "0.20.0"),
        ("estimate_cudagraphs_default", "0.19.1", "0.20.0"),
        ("hybrid_prefix_caching_default", "0.27.1", "0.28.0"),
        ("cpu_ssm_float32_on_avx512_bf16", "0.28.0", "0.29.0"),
        ("cpu_ssm_float32_on_amx", "0.25.1", "0.26.0"),
    ],
)
def test_version_table_boundaries(name, below, at):
    assert not vv.has(name, below) and vv.has(name, at) and vv.has(name, at + "+cpu")
    assert next(b for b in vv.TABLE if b.key == name).source


def test_amx_rule_ends_when_the_avx512_bf16_rule_starts():
    assert vv.has("cpu_ssm_float32_on_amx", "0.28.0") and not vv.has("cpu_ssm_float32_on_amx", "0.29.0")


def test_cpu_features_parsers():
    flags = "flags\t\t: fpu vme avx2 avx512f avx512_bf16 avx512_vnni"
    got = parse_cpuinfo(f"processor\t: 0\n{flags}\nbugs\t\t: none\n")
    assert (got.avx512_bf16, got.amx) == (True, False) and got.source == "/proc/cpuinfo flags"
    assert parse_cpuinfo("flags : fpu avx2 amx_tile amx_bf16").amx
    assert not parse_cpuinfo("no flags here").avx512_bf16
    line = json.dumps({"avx512_bf16": False, "amx": False, "capability": "AVX2", "torch": "2.13.0+cpu"})
    probe = parse_torch_probe("a warning\n" + line + "\n", "/venv/bin/python")
    assert not probe.avx512_bf16 and "AVX2" in probe.source and "2.13.0" in probe.source


def test_target_for_follows_the_runtime(catalog):
    from servectl.plan.service import target_for

    # a container runs the image's release; the CPU features then come from the kernel's flags
    gpu = target_for(catalog.gpu("rtx-5090"), runtime="docker")
    assert (gpu.version, gpu.python) == ("0.18.0", None) and "vllm/vllm-openai:v0.18.0-cu130" in gpu.version_reason
    cpu = target_for(catalog.gpu("cpu"), runtime="docker")
    assert cpu.version == "0.32.0" and cpu.host.source == "/proc/cpuinfo flags"


def test_target_for_a_local_cpu_plan_is_the_bootstrapped_build(catalog, vllm_python):
    from servectl.plan.service import target_for

    # locally the cpu profile runs the bootstrapped CPU build: its installed release and its torch's view of the CPU
    local = target_for(catalog.gpu("cpu"))
    assert local.python is not None and "installed vllm" in local.version_reason and local.version == "0.32.0"
    assert local.host.source.startswith("torch ")
    # a CPU build does not run a GPU profile's plan
    assert target_for(catalog.gpu("rtx-5090")).version == "0.18.0"
