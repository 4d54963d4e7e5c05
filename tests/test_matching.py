"""Profile matching on detections parsed from captured real outputs."""

from pathlib import Path

from servectl.catalog.load import load_catalog
from servectl.hardware.detect import detection_from_captured
from servectl.hardware.parsers import parse_nvml
from servectl.hardware.matching import choose_profile
from servectl.hardware.models import Detection

DATA = Path(__file__).parent / "data" / "gpus"
CAT = load_catalog()


def test_rtx5090_desktop_preset_when_display():
    det = detection_from_captured((DATA / "rtx5090x2-nvidia-smi.txt").read_text())
    c = choose_profile(det, CAT)
    assert c.profile.name == "rtx-5090" and c.preset == "desktop" and not c.generic
    assert any("2 devices" in w for w in c.warnings)


def test_gb10_unified_memory_headless():
    det = detection_from_captured(
        (DATA / "gb10-query-gpu-noheader.csv").read_text(),
        display=False,
        sysmem={"total": 130663165952, "available": 121411960832},
    )
    c = choose_profile(det, CAT)
    assert c.profile.name == "dgx-spark" and c.preset == "headless"


def test_amd_single_card_gets_generic_profile_with_warning():
    text = (
        '{"card0": {"VRAM Total Memory (B)": "21458059264", "VRAM Total Used Memory (B)": "27856896", '
        '"Card Series": "Radeon RX 7900 XT", "GFX Version": "gfx1100"}}'
    )  # marimo-team/marimo#9237
    c = choose_profile(detection_from_captured(text), CAT)
    assert c.generic and c.profile.vendor == "amd" and c.profile.gfx_target == "gfx1100"
    assert round(c.profile.memory_gib, 1) == 20.0 and c.profile.count == 1
    assert "rocm-4gpu" in c.warnings[0]


def test_h100_generic_with_detected_memory():
    det = Detection(
        gpus=parse_nvml(
            {
                "driver_version": "590.48.01",
                "devices": [
                    {
                        "index": 0,
                        "name": "NVIDIA H100 80GB HBM3",
                        "memory": {"total": 81559 << 20, "used": 0, "free": 81559 << 20},
                        "compute_capability": [9, 0],
                        "display_active": 0,
                        "processes": [],
                    }
                ],
            }
        ),
        source="test",
    )
    c = choose_profile(det, CAT)
    assert c.generic and c.profile.architecture == "hopper" and c.profile.memory_gib == 79.65
    assert "fp8" in c.profile.quantizations and "nvfp4" not in c.profile.quantizations
    assert c.preset == "headless" and c.warnings


def test_no_gpu_cpu_profile():
    c = choose_profile(Detection(source="none"), CAT)
    assert c.profile.name == "cpu" and c.reason == "no GPU: using the cpu profile"
