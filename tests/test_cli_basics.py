"""The CLI surface: help, listings with --json, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent / "servectl"


def test_help_through_the_installed_entry_point():
    proc = subprocess.run([str(BIN), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    for command in ("render", "profiles", "models"):
        assert command in proc.stdout


def test_render_help_lists_every_format(cli):
    out = cli("render", "--help").stdout
    for fmt in ("argv", "vllm-config", "docker", "compose", "systemd"):
        assert fmt in out
    assert "--validate" in out and "--vllm-bin" in out


def test_profiles_list_json_keys(cli):
    data = json.loads(cli("profiles", "list", "--json").stdout)
    rtx = next(p for p in data if p["name"] == "rtx-5090")
    assert set(rtx) >= {"name", "title", "vendor", "count", "memory_gib", "unified_memory", "compute_capability", "presets"}
    assert rtx["presets"]["headless"] == 0.956


def test_models_list_json_names_card_profiles(cli):
    data = {m["name"]: m for m in json.loads(cli("models", "list", "--json").stdout)}
    assert data["qwen3.5-35b-a3b-nvfp4"]["card_profiles"] == ["rtx-pro-6000-blackwell", "rtx-5090"]
    assert data["qwen3.5-35b-a3b-gptq-8bit"]["card_profiles"] == ["rocm-4gpu"]


def test_show_commands_print_every_field(cli):
    gpu = json.loads(cli("profiles", "show", "rocm-4gpu", "--json").stdout)
    assert gpu["container"]["image"] == "rocm/vllm:latest"
    model = yaml.safe_load(cli("models", "show", "qwen3.5-35b-a3b-mxfp4").stdout)
    assert model["repo"] == "olka-fi/Qwen3.5-35B-A3B-MXFP4"


def test_tables_render_for_people(cli):
    out = cli("profiles", "list").stdout
    assert "rtx-pro-6000-blackwell" in out and "GPU profiles" in out
    assert "qwen3.6-35b-a3b-fp8" in cli("models", "list").stdout


def test_card_without_settings_for_the_pair_exits_2(cli):
    result = cli("render", "qwen3.5-35b-a3b-nvfp4", "--gpu", "dgx-spark", "--card")
    assert result.exit_code == 2
    assert "--gpu rtx-pro-6000-blackwell" in result.stderr and "--gpu rtx-5090" in result.stderr


def test_unknown_format_is_bad_input(cli):
    result = cli("render", "tiny-cpu", "--gpu", "cpu", "--format", "helm")
    assert result.exit_code == 2


def test_relative_vllm_bin_is_refused(cli):
    result = cli("render", "tiny-cpu", "--gpu", "cpu", "--format", "systemd", "--vllm-bin", "bin/vllm")
    assert result.exit_code == 2 and "absolute" in result.stderr
