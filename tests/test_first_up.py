"""A GPU user's first `servectl up` in a fresh data directory: it says exactly which command makes the vLLM
environment, and that command's dry run picks the right release, wheel variant and torch build.

The GPU is simulated the only way a GPU can be here: detection replays a real captured nvidia-smi / rocm-smi
output (tests/data/gpus/, each with its source), and the platform facts (architecture, Python, glibc, ROCm
version) are those of the captured kind of machine. Everything else is servectl's real code in-process.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from servectl.hardware import detect as d
from servectl.hardware import host as h

GPUS = Path(__file__).parent / "data" / "gpus"
NO_GPU = d.Detection(source="simulated: no GPU")

# (profile, recipe, capture or None, platform facts, rocm version, up's --gpu, release, variant, torch)
CASES = [
    # the NVFP4 card pins 0.18.0, which has known bug nvfp4-moe-cutlass-sm120 on sm_120 (vllm-project/vllm#38423, no
    # patch): the newest release without it in the build each driver runs (CUDA 12.9 on 576, CUDA 13 on the assumed 580)
    (
        "rtx-5090",
        "qwen3.5-35b-a3b-nvfp4",
        "rtx5090d-576.52-nvidia-smi.txt",
        ("x86_64", "3.12.3", "2.39"),
        None,
        None,
        "0.31.0",
        "cu129",
        "2.13.0+cu129",
    ),
    (
        "rtx-pro-6000-blackwell",
        "qwen3.5-35b-a3b-nvfp4",
        None,
        ("x86_64", "3.11.7", "2.36"),
        None,
        "rtx-pro-6000-blackwell",
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
    ),
    (
        "rtx-5090-mxfp4",
        "qwen3.5-35b-a3b-mxfp4",
        "rtx5090d-576.52-nvidia-smi.txt",
        ("x86_64", "3.12.3", "2.39"),
        None,
        None,
        "0.31.0",
        "cu129",
        "2.13.0+cu129",
    ),
    (
        "dgx-spark",
        "qwen3.6-35b-a3b-fp8",
        "nvml-gb10-dgx-spark.json",
        ("aarch64", "3.12.3", "2.39"),
        None,
        None,
        "0.34.0",
        "cu130",
        "2.14.0 (PyPI, CUDA 13.0)",
    ),
    (
        "rocm-4gpu",
        "qwen3.5-35b-a3b-gptq-8bit",
        "rocm-smi-json-4x-mi300a.json",
        ("x86_64", "3.12.3", "2.39"),
        "7.2.1",
        None,
        "0.30.0",
        "rocm723",
        "bundled ROCm build",
    ),
    ("cpu", "tiny-cpu", None, ("x86_64", "3.11.7", "2.36"), None, None, "0.32.0", "cpu", "2.13.0+cpu"),
]


@pytest.fixture()
def fresh(tmp_path, monkeypatch):
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("SERVECTL_VLLM_PYTHON", raising=False)
    return tmp_path


def simulate(monkeypatch, capture: str | None, facts: tuple[str, str, str], rocm: str | None) -> None:
    detection = (
        NO_GPU if capture is None else d.detection_from_captured((GPUS / capture).read_text(), source=f"captured {capture}")
    )
    monkeypatch.setattr(d, "detect", lambda *a, **k: detection)
    monkeypatch.setattr(h, "probe_platform", lambda python=None: h.PlatformFacts(*facts))
    monkeypatch.setattr(h, "probe_rocm_version", lambda root=None: rocm)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_first_up_names_the_bootstrap_command_and_its_dry_run_is_right(cli, fresh, monkeypatch, case):
    profile, recipe, capture, facts, rocm, gpu, release, variant, torch = case
    simulate(monkeypatch, capture, facts, rocm)
    up = cli("up", recipe, *(["--gpu", gpu] if gpu else []), "--port", "1", "--no-check")
    assert up.exit_code == 2, up.output
    errors = [ln for ln in up.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in up.stderr, up.stderr
    found = re.search(r"run `(servectl bootstrap [^`]*)`", up.stderr)
    assert found, up.stderr
    expected = (
        f"servectl bootstrap --cpu --recipe {recipe}"
        if profile == "cpu"
        else f"servectl bootstrap --recipe {recipe}" + (f" --gpu {gpu}" if gpu else "")
    )
    assert found.group(1) == expected
    assert not (fresh / "state" / "servectl" / "deployments").exists() or not any(
        (fresh / "state" / "servectl" / "deployments").iterdir()
    )

    words = shlex.split(found.group(1))[1:]
    result = cli(*words, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    c = data["choice"]
    assert (c["release"], c["variant"], c["torch"], data["profile"]) == (release, variant, torch, profile.removesuffix("-mxfp4"))
    assert data["venv"] == str(fresh / "data" / "servectl" / "venvs" / f"vllm-{release}-{variant}")
    assert not (fresh / "data" / "servectl").exists()  # a dry run makes nothing


def test_the_environment_bootstrap_makes_is_the_one_up_finds(cli, monkeypatch, vllm_python):
    """On this machine (no GPU, the suite's real CPU environment): `up tiny-cpu` finds what `bootstrap` made."""
    from servectl.catalog.load import load_catalog
    from servectl.vllmenv.location import find_vllm_python
    from vllm_env import default_venv

    monkeypatch.delenv("SERVECTL_VLLM_PYTHON", raising=False)
    data = json.loads(cli("bootstrap", "--dry-run", "--json").stdout)
    assert data["venv"] == str(default_venv())
    cat = load_catalog()
    assert find_vllm_python(recipe=cat.model("tiny-cpu"), profile=cat.gpu("cpu")) == default_venv() / "bin" / "python"


def test_python_and_the_environment_variable_override(cli, fresh, monkeypatch, tmp_path):
    simulate(monkeypatch, None, ("x86_64", "3.11.7", "2.36"), None)
    monkeypatch.setenv("SERVECTL_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    up = cli("up", "tiny-cpu", "--port", "1")
    assert up.exit_code == 2 and "SERVECTL_VLLM_PYTHON" in up.stderr and str(tmp_path / "nope") in up.stderr
    up = cli("up", "tiny-cpu", "--port", "1", "--python", str(tmp_path / "other" / "python"))
    assert up.exit_code == 2 and "(--python)" in up.stderr
