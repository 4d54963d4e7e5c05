"""`servectl bootstrap --dry-run` on simulated GPU hosts: the release, wheel variant and torch build it picks.

Each host is a real captured nvidia-smi / rocm-smi output (tests/data/gpus/, every file with its source) plus
the facts a capture does not carry (driver where none was captured, Python, glibc, ROCm version), stated the
way a user planning for that machine states them. Expected values come from vLLM's installation docs
(per-release default CUDA and torch pins from the wheels' METADATA, the NVIDIA driver floors, the ROCm variant
table) and the known-bug catalog.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from servectl.catalog import vllm_install as vi
from servectl.catalog.known_bugs import BugContext, KnownBug, applicable_bugs
from servectl.catalog.patch_schema import Conditions
from servectl.hardware.host import Host
from servectl.vllmenv.choose import choose

GPUS = Path(__file__).parent / "data" / "gpus"
NVFP4, MXFP4, GPTQ, FP8 = "qwen3.5-35b-a3b-nvfp4", "qwen3.5-35b-a3b-mxfp4", "qwen3.5-35b-a3b-gptq-8bit", "qwen3.6-35b-a3b-fp8"


def dry_run(cli, *args):
    result = cli("bootstrap", "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def capture(name: str) -> str:
    path = GPUS / name
    assert (GPUS / f"{name}.source").exists(), "every capture names its source"
    return str(path)


# (id, bootstrap args, release, variant, torch, requirements, indexes)
CUDA_HOSTS = [
    # RTX 5090 D on driver 576.52 (CUDA 12.9): no CUDA 13 build runs; the newest release with a CUDA 12.9 build is
    # 0.31.0 (+cu129)
    (
        "rtx5090-driver-576-mxfp4",
        ["--from", capture("rtx5090d-576.52-nvidia-smi.txt"), "--recipe", MXFP4],
        "0.31.0",
        "cu129",
        "2.13.0+cu129",
        ["vllm==0.31.0+cu129", "torch==2.13.0+cu129", "torchvision==0.28.0+cu129"],
        ["https://wheels.vllm.ai/0.31.0/cu129", "https://download.pytorch.org/whl/cu129"],
    ),
    # the NVFP4 card pins v0.18.0 on the RTX 5090, but 0.17-0.19 carry known bug nvfp4-moe-cutlass-sm120 (a warning,
    # no patch: vllm-project/vllm#38423, fixed in 0.20.0) for NVFP4 MoE on sm_120: the newest release without an
    # unpatched known bug the driver runs (576: a CUDA 12.9 build, 0.31.0+cu129; 610: 0.34.0)
    (
        "rtx5090-driver-576-nvfp4",
        ["--from", capture("rtx5090d-576.52-nvidia-smi.txt"), "--recipe", NVFP4],
        "0.31.0",
        "cu129",
        "2.13.0+cu129",
        ["vllm==0.31.0+cu129", "torch==2.13.0+cu129", "torchvision==0.28.0+cu129"],
        ["https://wheels.vllm.ai/0.31.0/cu129", "https://download.pytorch.org/whl/cu129"],
    ),
    # the same card on driver 595.71.05 (CUDA 13.2): the default CUDA 13.0 wheel of the newest release, PyPI torch
    (
        "rtx5090-driver-595-mxfp4",
        ["--from", capture("rtx5090-595.71.05-nvidia-smi.txt"), "--recipe", MXFP4],
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
        ["vllm==0.34.0", "torch==2.14.0"],
        [],
    ),
    (
        "2x-rtx5090-driver-610-nvfp4",
        ["--from", capture("rtx5090x2-nvidia-smi.txt"), "--recipe", NVFP4],
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
        ["vllm==0.34.0", "torch==2.14.0"],
        [],
    ),
    # DGX Spark: NVFP4 MoE on GB10 before 0.20.0 is a guard (nvfp4-moe-cutlass-gb10); the newest release anyway
    (
        "gb10-nvfp4",
        ["--from", capture("gb10-nvidia-smi.txt"), "--recipe", NVFP4],
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
        ["vllm==0.34.0", "torch==2.14.0"],
        [],
    ),
    (
        "rtx5090+rtx4090-driver-580",
        ["--from", capture("rtx5090-rtx4090-580.82.09-nvidia-smi.txt")],
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
        ["vllm==0.34.0", "torch==2.14.0"],
        [],
    ),
    # RTX PRO 6000 Blackwell: the driver of a captured machine (bigstack-oss/cubecos#312, 580.105.06) and the
    # livepeer/ai-runner#679 header's 575.57.08
    (
        "rtx-pro-6000-driver-580",
        ["--gpu", "rtx-pro-6000-blackwell", "--driver", "580.105.06", "--recipe", GPTQ],
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
        ["vllm==0.34.0", "torch==2.14.0"],
        [],
    ),
    (
        "rtx-pro-6000-driver-575-fp8",
        ["--gpu", "rtx-pro-6000-blackwell", "--driver", "575.57.08", "--recipe", FP8],
        "0.31.0",
        "cu129",
        "2.13.0+cu129",
        ["vllm==0.31.0+cu129", "torch==2.13.0+cu129", "torchvision==0.28.0+cu129"],
        ["https://wheels.vllm.ai/0.31.0/cu129", "https://download.pytorch.org/whl/cu129"],
    ),
    # 0.18.0 asked for: on a CUDA 12 driver the default cu129 wheel with torch 2.10.0 from the cu128 index (its
    # PyPI default CUDA); on a >= 580 driver the +cu130 build, as the card's v0.18.0-cu130 image
    (
        "pinned-0.18-driver-575",
        ["--gpu", "rtx-pro-6000-blackwell", "--driver", "575.57.08", "--vllm", "0.18.0"],
        "0.18.0",
        "cu129",
        "2.10.0+cu128",
        ["vllm==0.18.0", "torch==2.10.0+cu128", "torchvision==0.25.0+cu128"],
        ["https://download.pytorch.org/whl/cu128"],
    ),
    (
        "pinned-0.18-driver-580",
        ["--gpu", "rtx-5090", "--driver", "580.82.09", "--vllm", "0.18.0"],
        "0.18.0",
        "cu130",
        "2.10.0+cu130",
        ["vllm==0.18.0+cu130", "torch==2.10.0+cu130", "torchvision==0.25.0+cu130"],
        ["https://wheels.vllm.ai/0.18.0/cu130", "https://download.pytorch.org/whl/cu130"],
    ),
    # DGX Spark: GB10 is sm_121, never a CUDA 12 build; aarch64 (assumed for GB10, stated or not)
    (
        "gb10-fp8",
        ["--from", capture("gb10-nvidia-smi.txt"), "--recipe", FP8],
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
        ["vllm==0.34.0", "torch==2.14.0"],
        [],
    ),
    (
        "gb10-0.19.1",
        ["--from", capture("nvml-gb10-dgx-spark.json"), "--arch", "aarch64", "--vllm", "0.19.1"],
        "0.19.1",
        "cu130",
        "2.10.0+cu130",
        ["vllm==0.19.1+cu130", "torch==2.10.0+cu130", "torchvision==0.25.0+cu130"],
        ["https://wheels.vllm.ai/0.19.1/cu130", "https://download.pytorch.org/whl/cu130"],
    ),
    # GPUs of no profile: an H100 on 590 (CUDA 13), an RTX 4090 on 535 (CUDA 12 only)
    (
        "h100-driver-590",
        ["--from", capture("nvidia-smi-query-gpu-h100-80gb-hbm3-590.48.01.csv")],
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
        ["vllm==0.34.0", "torch==2.14.0"],
        [],
    ),
    (
        "rtx4090-driver-535",
        ["--from", capture("nvidia-smi-q-x-rtx-4090-driver-535.xml")],
        "0.31.0",
        "cu129",
        "2.13.0+cu129",
        ["vllm==0.31.0+cu129", "torch==2.13.0+cu129", "torchvision==0.28.0+cu129"],
        ["https://wheels.vllm.ai/0.31.0/cu129", "https://download.pytorch.org/whl/cu129"],
    ),
    # Python 3.10: 0.32+ need >= 3.11; glibc 2.28 (manylinux_2_28): 0.20.x and 0.21.0 wheels need 2.35 / 2.24
    (
        "h100-python-3.10",
        ["--from", capture("nvidia-smi-query-gpu-h100-80gb-hbm3-590.48.01.csv"), "--python-version", "3.10.12"],
        "0.31.0",
        "cu130",
        "2.13.0 (PyPI, CUDA 13.0)",
        ["vllm==0.31.0", "torch==2.13.0"],
        [],
    ),
    # glibc 2.27: every manylinux_2_28 wheel is out; 0.21.0's PyPI wheel is manylinux_2_24
    (
        "h100-glibc-2.27",
        ["--from", capture("nvidia-smi-query-gpu-h100-80gb-hbm3-590.48.01.csv"), "--glibc", "2.27"],
        "0.21.0",
        "cu130",
        "2.11.0 (PyPI, CUDA 13.0)",
        ["vllm==0.21.0", "torch==2.11.0"],
        [],
    ),
]


@pytest.mark.parametrize("case", CUDA_HOSTS, ids=[c[0] for c in CUDA_HOSTS])
def test_cuda_hosts(cli, case, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    _, args, release, variant, torch, requirements, indexes = case
    data = dry_run(cli, *args)
    choice = data["choice"]
    assert (choice["release"], choice["platform"], choice["variant"], choice["method"]) == (release, "cuda", variant, "pip")
    assert (choice["torch"], choice["requirements"], choice["indexes"]) == (torch, requirements, indexes)
    assert data["venv"] == str(tmp_path / "servectl" / "venvs" / f"vllm-{release}-{variant}")
    install = next(c for c in data["commands"] if " install " in c)
    assert install.endswith(" ".join(requirements)) and all(f"--extra-index-url {i}" in install for i in indexes)
    assert choice["reasons"] and not (tmp_path / "servectl").exists()


def test_the_card_release_is_tried_first_unless_it_has_an_unpatched_known_bug(cli, catalog):
    """The NVFP4 card pins v0.18.0 on the RTX 5090 and is tried first; the catalog's nvfp4-moe-cutlass-sm120
    (vllm-project/vllm#38423: a warning, no patch) sends it behind the releases without an unpatched known bug,
    said in `skipped` and the reasons. With that entry gone (the lookup is the chooser's parameter) the card's
    release is chosen with its patches; a guard on it leaves it out the same way; --vllm 0.18.0 is honoured with the
    warning said."""
    data = dry_run(cli, "--gpu", "rtx-5090", "--driver", "580.82.09", "--recipe", NVFP4)
    choice = data["choice"]
    assert choice["release"] == "0.34.0"
    assert any("pins vLLM 0.18.0" in r for r in choice["reasons"])
    assert choice["skipped"][0]["vllm"] == "0.18.0" and "nvfp4-moe-cutlass-sm120" in choice["skipped"][0]["why"]

    host = Host(vendor="nvidia", compute_capability="12.0", driver_version="580.82.09", arch="x86_64", python_version="3.11.7")
    recipe, profile = catalog.model(NVFP4), catalog.gpu("rtx-5090")

    def without(ctx: BugContext) -> list[KnownBug]:
        assert "nvfp4_moe_native" in ctx.features  # the recipe's default launch: NVFP4 experts on native kernels
        return [b for b in applicable_bugs(ctx) if b.id != "nvfp4-moe-cutlass-sm120"]

    card = choose(host, profile=profile, recipe=recipe, lookup=without)
    assert card.release == "0.18.0" and "rope-validation-set" in card.patches and not card.skipped

    def guarded(ctx: BugContext) -> list[KnownBug]:
        extra = (
            []
            if ctx.vllm != "0.18.0"
            else [
                KnownBug(
                    "sm12x-x",
                    "kernels fail",
                    "guard",
                    "<0.20.0",
                    "0.20.0",
                    ("https://github.com/vllm-project/vllm/pull/38423",),
                    "upgrade",
                    "why",
                    Conditions(compute_capabilities=["12.0"]),
                )
            ]
        )
        return without(ctx) + extra

    c = choose(host, profile=profile, recipe=recipe, lookup=guarded)
    assert c.release == "0.34.0" and c.skipped[0] == ("0.18.0", "known bug sm12x-x: kernels fail")
    asked = choose(host, profile=profile, recipe=recipe, version="0.18.0")
    assert asked.release == "0.18.0" and any("NVFP4 MoE on sm_120" in w for w in asked.warnings)


def test_a_release_with_a_warning_is_taken_when_nothing_better_fits(catalog):
    """Only releases with an unpatched known bug fit (the recipe's minimum allows 0.17-0.19): the first of them is
    chosen, its warning said, nothing listed as passed over for it."""
    host = Host(vendor="nvidia", compute_capability="12.0", driver_version="580.82.09", arch="x86_64", python_version="3.11.7")
    recipe = replace(catalog.model(NVFP4), min_vllm=">=0.17,<0.20")
    c = choose(host, profile=catalog.gpu("rtx-5090"), recipe=recipe)
    assert c.release == "0.18.0" and any("NVFP4 MoE on sm_120" in w for w in c.warnings)
    assert not any("releases without one first" in why for _, why in c.skipped)
    # the same recipe with Marlin experts in its per-profile flags has no such bug: the card's release, clean
    marlin = replace(
        recipe,
        profiles={
            **recipe.profiles,
            "rtx-5090": replace(recipe.profiles["rtx-5090"], args=[*recipe.profiles["rtx-5090"].args, "--moe-backend", "marlin"]),
        },
    )
    clean = choose(host, profile=catalog.gpu("rtx-5090"), recipe=marlin)
    assert clean.release == "0.18.0" and not any("NVFP4 MoE" in w for w in clean.warnings)


def test_a_guard_of_the_lookup_moves_the_choice_and_patches_stay(catalog):
    """The chooser takes the known-bug lookup as a parameter: a guard on the newest release moves it down, a
    patch does not (bootstrap applies it)."""
    host = Host(
        vendor="nvidia",
        gpu_name="NVIDIA GeForce RTX 5090",
        gpu_count=1,
        compute_capability="12.0",
        driver_version="595.71.05",
        arch="x86_64",
        python_version="3.11.7",
        glibc_version="2.36",
    )
    recipe, profile = catalog.model(MXFP4), catalog.gpu("rtx-5090")

    def lookup(ctx: BugContext) -> list[KnownBug]:
        bugs = {
            "0.34.0": KnownBug("x", "breaks", "guard", "==0.34.0", "0.35.0", (), "wait", "why", Conditions()),
            "0.33.0": KnownBug("y", "patched", "patch", "==0.33.0", None, (), "apply", "why", Conditions()),
        }
        return [bugs[ctx.vllm]] if ctx.vllm in bugs else []

    c = choose(host, profile=profile, recipe=recipe, lookup=lookup)
    assert (c.release, c.patches, c.skipped[0][0]) == ("0.33.0", ("y",), "0.34.0")
    assert choose(host, profile=profile, recipe=recipe).release == "0.34.0"
    forced = choose(host, profile=profile, recipe=recipe, lookup=lookup, version="0.34.0")  # --vllm: said, not skipped
    assert forced.release == "0.34.0" and any("known bug x" in w for w in forced.warnings)


def test_the_recipe_minimum_is_honoured(catalog):
    host = Host(vendor="nvidia", compute_capability="12.0", driver_version="580.82.09", arch="x86_64", python_version="3.11.7")
    recipe = replace(catalog.model(MXFP4), min_vllm=">=0.20,<0.23")
    c = choose(host, profile=catalog.gpu("rtx-5090"), recipe=recipe)
    assert c.release == "0.22.1" and c.variant == "cu130"


ROCM = capture("rocm-smi-json-4x-mi300a.json")
ROCM_HOSTS = [
    # ROCm 7.2.x host, Python 3.12, glibc 2.39: the newest release with a wheel built for ROCm <= the host's
    (
        "mi300a-rocm-7.2",
        ["--from", ROCM, "--rocm-version", "7.2.1", "--python-version", "3.12.3", "--glibc", "2.39", "--recipe", GPTQ],
        "0.30.0",
        "rocm723",
        "pip",
        ["vllm==0.30.0+rocm723"],
        ["https://wheels.vllm.ai/rocm/0.30.0/rocm723"],
    ),
    # glibc 2.35 (Ubuntu 22.04): 0.30.0 is manylinux_2_39
    (
        "mi300a-glibc-2.35",
        ["--from", ROCM, "--rocm-version", "7.2.1", "--python-version", "3.12.3", "--glibc", "2.35"],
        "0.29.0",
        "rocm723",
        "pip",
        ["vllm==0.29.0+rocm723"],
        ["https://wheels.vllm.ai/rocm/0.29.0/rocm723"],
    ),
    # ROCm 7.0: the rocm700 wheels (0.17.0-0.18.0); 0.18.0 needs the rope patch for the Qwen3.5 recipes
    (
        "mi300a-rocm-7.0",
        ["--from", ROCM, "--rocm-version", "7.0.2", "--python-version", "3.12.3", "--recipe", GPTQ],
        "0.18.0",
        "rocm700",
        "pip",
        ["vllm==0.18.0+rocm700"],
        ["https://wheels.vllm.ai/rocm/0.18.0/rocm700"],
    ),
    # Python 3.11 (the wheels are cp312 only) or a ROCm 6 host: the release's image
    (
        "mi300a-python-3.11",
        ["--from", ROCM, "--rocm-version", "7.2.1", "--python-version", "3.11.7"],
        "0.34.0",
        "image",
        "docker",
        [],
        [],
    ),
    (
        "mi300a-rocm-6",
        ["--from", ROCM, "--rocm-version", "6.4.1", "--python-version", "3.12.3"],
        "0.34.0",
        "image",
        "docker",
        [],
        [],
    ),
]


@pytest.mark.parametrize("case", ROCM_HOSTS, ids=[c[0] for c in ROCM_HOSTS])
def test_rocm_hosts(cli, case):
    _, args, release, variant, method, requirements, indexes = case
    data = dry_run(cli, *args)
    c = data["choice"]
    assert (c["release"], c["platform"], c["variant"], c["method"]) == (release, "rocm", variant, method)
    assert (c["requirements"], c["indexes"]) == (requirements, indexes)
    if method == "docker":
        assert c["image"] == f"vllm/vllm-openai-rocm:v{release}" and data["commands"] == [f"docker pull {c['image']}"]
    else:
        assert "torch" not in " ".join(c["requirements"])  # the ROCm wheel brings its own torch build
    if release == "0.18.0":
        assert c["patches"] == ["rope-validation-set"] and any("rope-validation-set" in cmd for cmd in data["commands"])


def test_gfx908_and_unlisted_targets_need_a_source_build(cli):
    data = dry_run(cli, "--gpu", "rocm-4gpu", "--recipe", GPTQ)  # the profile's default MI100
    c = data["choice"]
    assert (c["method"], c["variant"]) == ("source", "source-gfx908")
    assert "PYTORCH_ROCM_ARCH=gfx908" in data["commands"][-1]
    rx6800 = dry_run(cli, "--from", capture("rocm-smi-csv-rx6800-raphael.csv"))["choice"]
    assert rx6800["variant"] == "source-gfx1030" and any("unsupported" in r for r in rx6800["reasons"])
    result = cli("bootstrap", "--gpu", "rocm-4gpu")  # no venv can be made: one line, exit 2
    assert result.exit_code == 2 and "source build" in result.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--from", capture("nvidia-smi-q-x-a100-sxm4-mig.xml")], "runs no vLLM build"),  # driver 510
        (["--gpu", "rtx-5090", "--driver", "560.35.03"], "Blackwell"),  # below R570
        (["--from", capture("gb10-nvidia-smi.txt"), "--driver", "575.57.08"], "sm_121"),  # GB10 on a CUDA 12 driver
        (["--gpu", "rtx-5090", "--driver", "575.57.08", "--vllm", "0.33.0"], "no CUDA 12 build is verified"),
        (["--from", capture("nvidia-smi-query-gpu-h100-80gb-hbm3-590.48.01.csv"), "--glibc", "2.17"], "glibc"),
    ],
)
def test_hosts_no_release_fits_are_one_line_errors(cli, args, words):
    result = cli("bootstrap", "--dry-run", *args)
    assert result.exit_code == 2 and words in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_the_chooser_asks_the_catalog_with_the_recipe_and_gpu(catalog):
    """The lookup sees the release, platform, GPU and the recipe's facts (its guards and patches can match them)."""
    seen: list[BugContext] = []
    host = Host(vendor="nvidia", compute_capability="12.1", driver_version="580.95.05", arch="aarch64", python_version="3.12.3")
    choose(host, profile=catalog.gpu("dgx-spark"), recipe=catalog.model(FP8), lookup=lambda ctx: seen.append(ctx) or [])
    ctx = seen[0]
    assert (ctx.vllm, ctx.platform, ctx.compute_capability, ctx.quantization, ctx.recipe) == (
        "0.34.0",
        "cuda",
        "12.1",
        "fp8",
        FP8,
    )
    assert ctx.architecture == catalog.model(FP8).architecture.hf_architecture


def test_every_release_of_the_table_has_its_facts():
    for release in vi.RELEASES:
        row = vi.cuda_releases(release)
        assert row is not None and any(b.default for b in row.builds), release
        assert row.torch in vi.TORCH_CUDA12_TAG or all(b.cuda.startswith("13") for b in row.builds if b.verified != "U"), release
