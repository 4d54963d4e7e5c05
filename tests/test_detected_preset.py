"""Without --gpu, `plan` and `up` use the preset detection printed with the profile (not the profile's default).

Detection replays a real capture: two cards, an RTX 5090 and an RTX 4090, neither driving a display
(tests/data/gpus/rtx5090-rtx4090-580.82.09-nvidia-smi.txt): profile rtx-5090, preset headless (0.956), while
the rtx-5090 profile's default preset is desktop (0.905)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servectl.catalog.load import load_catalog
from servectl.hardware import detect as d

CAPTURE = Path(__file__).parent / "data" / "gpus" / "rtx5090-rtx4090-580.82.09-nvidia-smi.txt"
MODEL = "qwen3.5-35b-a3b-nvfp4"


@pytest.fixture()
def headless_5090(monkeypatch):
    detection = d.detection_from_captured(CAPTURE.read_text(), source=f"captured {CAPTURE.name}")
    monkeypatch.setattr(d, "detect", lambda *a, **k: detection)
    profile = load_catalog().gpu("rtx-5090")
    assert profile.default_preset == "desktop" and not detection.display  # the case where the two differ
    return {name: f"{p.gpu_memory_utilization:g}" for name, p in profile.presets.items()}


def utilization(flags: list[str]) -> str:
    return flags[flags.index("--gpu-memory-utilization") + 1]


def test_plan_uses_the_detected_preset(cli, headless_5090):
    result = cli("plan", MODEL, "--json")
    assert result.exit_code == 0, result.output
    assert "profile rtx-5090 (preset headless)" in result.stderr
    assert utilization(json.loads(result.stdout)["flags"]) == headless_5090["headless"]
    chosen = cli("plan", MODEL, "--preset", "desktop-aggressive", "--json")  # --preset still decides
    assert utilization(json.loads(chosen.stdout)["flags"]) == headless_5090["desktop-aggressive"]
    named = cli("plan", MODEL, "--gpu", "rtx-5090", "--json")  # --gpu: the profile's default, nothing detected
    assert utilization(json.loads(named.stdout)["flags"]) == headless_5090["desktop"]
    assert "preset headless" not in named.stderr


def test_up_uses_the_detected_preset(headless_5090, tmp_path):
    from servectl.launch.events import Detected
    from servectl.launch.request import LaunchRequest
    from servectl.launch.start import settle

    seen = []
    # --runtime docker and a local checkpoint: nothing to download or probe; the settings are what up would start
    request = LaunchRequest(MODEL, runtime="docker", model_path=str(tmp_path))
    spec = settle(request, seen.append).spec
    assert [(e.profile, e.preset) for e in seen if isinstance(e, Detected)] == [("rtx-5090", "headless")]
    assert utilization(spec.vllm_args) == headless_5090["headless"]
    spec = settle(LaunchRequest(MODEL, runtime="docker", model_path=str(tmp_path), preset="desktop"), seen.append).spec
    assert utilization(spec.vllm_args) == headless_5090["desktop"]
