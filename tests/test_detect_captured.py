"""Detection parsers and profile matching on real captured tool outputs (tests/data/gpus/*.source cite each).

The NVML path is tested by replaying real values: a captured `nvidia-smi --query-gpu` / `--query-compute-apps`
pair is turned into the dict `probe_nvml()` returns, and `parse_nvml` must read the same device from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from servectl.hardware import detect as d
from servectl.hardware import parsers
from servectl.catalog.load import load_catalog
from servectl.errors import UserError
from servectl.hardware.matching import choose_profile

DATA = Path(__file__).parent / "data" / "gpus"
MIB = 1024 * 1024


def _read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_xml_a100_mig_reads_the_whole_gpu_not_its_mig_slices():
    (g,) = parsers.parse_nvidia_smi_xml(_read("nvidia-smi-q-x-a100-sxm4-mig.xml"))
    assert (g.name, g.memory_total_mib, g.memory_free_mib) == ("NVIDIA A100-SXM4-40GB", 40960, 40315)
    assert (g.driver_version, g.cuda_version, g.display_active) == ("510.47.03", "11.6", False)


def test_xml_laptop_gpu_lists_the_display_server_process():
    (g,) = parsers.parse_nvidia_smi_xml(_read("nvidia-smi-q-x-rtx-3060.xml"))
    assert g.memory_total_mib == 6144 and g.memory_used_mib == 5
    assert [(p.pid, p.name, p.used_mib) for p in g.processes] == [(28543, "/usr/libexec/Xorg", 4)]


def test_xml_rtx4090():
    (g,) = parsers.parse_captured(_read("nvidia-smi-q-x-rtx-4090-driver-535.xml"))
    assert (g.name, g.memory_total_mib, g.driver_version) == ("NVIDIA GeForce RTX 4090", 24564, "535.86.05")


@pytest.mark.parametrize(
    ("stem", "name", "total", "free", "cc", "display"),
    [
        ("h100-80gb-hbm3-590.48.01", "NVIDIA H100 80GB HBM3", 81559, 61263, "9.0", False),
        ("h200-590.48.01", "NVIDIA H200", 143771, 110796, "9.0", False),
        ("geforce-rtx-4080-super-595.71.05", "NVIDIA GeForce RTX 4080 SUPER", 16376, 14470, "8.9", True),
    ],
)
def test_query_gpu_csv_with_processes(stem, name, total, free, cc, display):
    (g,) = parsers.parse_captured(_read(f"nvidia-smi-query-gpu-{stem}.csv"))
    assert (g.name, g.memory_total_mib, g.memory_free_mib, g.compute_capability, g.display_active) == (
        name,
        total,
        free,
        cc,
        display,
    )
    (g,) = parsers.with_processes([g], parsers.parse_nvidia_smi_apps(_read(f"nvidia-smi-query-compute-apps-{stem}.csv")))
    assert len(g.processes) == 3 and all(p.used_mib and p.used_mib > 0 for p in g.processes)


def test_process_list_alone_is_refused():
    with pytest.raises(UserError, match="process list"):
        parsers.parse_captured(_read("nvidia-smi-query-compute-apps-h200-590.48.01.csv"))


def _as_nvml(g, apps) -> dict:
    """The dict probe_nvml() builds, filled with the values of a captured nvidia-smi output."""
    major, minor = g.compute_capability.split(".")
    to_b = lambda mib: int(mib * MIB)  # noqa: E731
    return {
        "driver_version": g.driver_version,
        "cuda_driver_version": 13010,  # nvidia-smi --version of these captures: CUDA Version 13.1
        "devices": [
            {
                "index": g.index,
                "name": g.name,
                "memory": {"total": to_b(g.memory_total_mib), "used": to_b(g.memory_used_mib), "free": to_b(g.memory_free_mib)},
                "compute_capability": [int(major), int(minor)],
                "display_active": int(bool(g.display_active)),
                "processes": [{"pid": p.pid, "used": to_b(p.used_mib)} for p in apps.get(g.name, [])],
            }
        ],
    }


@pytest.mark.parametrize("stem", ["h100-80gb-hbm3-590.48.01", "geforce-rtx-4080-super-595.71.05"])
def test_nvml_dict_replayed_from_real_values(stem):
    (smi,) = parsers.parse_captured(_read(f"nvidia-smi-query-gpu-{stem}.csv"))
    apps = parsers.parse_nvidia_smi_apps(_read(f"nvidia-smi-query-compute-apps-{stem}.csv"))
    (g,) = parsers.parse_nvml(_as_nvml(smi, apps))
    assert (g.name, g.compute_capability, g.display_active, g.cuda_version) == (
        smi.name,
        smi.compute_capability,
        smi.display_active,
        "13.1",
    )
    assert g.memory_total_mib == pytest.approx(smi.memory_total_mib)
    assert g.memory_free_mib == pytest.approx(smi.memory_free_mib)
    assert sorted(p.pid for p in g.processes) == sorted(p.pid for p in apps[smi.name])
    assert not g.unified_memory


def test_nvml_gb10_unified_memory_comes_from_system_memory():
    (g,) = parsers.parse_captured(_read("nvml-gb10-dgx-spark.json"))
    assert g.unified_memory and g.compute_capability == "12.1" and g.cuda_version == "13.0"
    assert g.memory_total_mib == pytest.approx(127600748 / 1024)  # MemTotal kB -> MiB
    assert g.display_active is None


def test_rocm_smi_json_and_csv():
    (g,) = parsers.parse_captured(_read("rocm-smi-json-rx7900xt.json"))
    assert (g.vendor, g.name, g.gfx_target, g.memory_total_mib) == ("amd", "Radeon RX 7900 XT", "gfx1100", 21458059264 / MIB)
    dgpu, igpu = parsers.parse_captured(_read("rocm-smi-csv-rx6800-raphael.csv"))
    assert (dgpu.gfx_target, dgpu.memory_total_mib, igpu.gfx_target) == ("gfx1030", 16368, "gfx1036")


def test_nvml_probe_reports_no_driver_here():
    """No NVIDIA driver on this machine: nvmlInit fails and the probe says so instead of crashing."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present on this machine")
    except pynvml.NVMLError:
        pass
    with pytest.raises(d.ProbeUnavailable, match="NVML"):
        d.probe_nvml()


@pytest.mark.parametrize(
    ("fixture", "profile", "preset", "generic", "memory_gib"),
    [
        ("nvml-gb10-dgx-spark.json", "dgx-spark", "headless", False, 119.7),
        ("nvidia-smi-query-gpu-h100-80gb-hbm3-590.48.01.csv", "generic-nvidia", "headless", True, 79.65),
        ("nvidia-smi-query-gpu-geforce-rtx-4080-super-595.71.05.csv", "generic-nvidia", "desktop", True, 15.99),
        ("rocm-smi-json-rx7900xt.json", "generic-amd", "headless", True, 19.98),
    ],
)
def test_choice_on_captured_hardware(fixture, profile, preset, generic, memory_gib):
    choice = choose_profile(d.detection_from_captured(_read(fixture)), load_catalog())
    assert (choice.profile.name, choice.preset, choice.generic) == (profile, preset, generic)
    assert choice.profile.memory_gib == pytest.approx(memory_gib, abs=0.01)
    assert bool(choice.warnings) == generic


def test_no_gpu_here_chooses_cpu():
    choice = choose_profile(d.detect(), load_catalog())
    assert (choice.profile.name, choice.reason) == ("cpu", "no GPU: using the cpu profile")


def test_gpus_from_capture_with_processes_cli():
    import json

    from click.testing import CliRunner

    from servectl.cli import main

    gpu, apps = DATA / "nvidia-smi-query-gpu-h200-590.48.01.csv", DATA / "nvidia-smi-query-compute-apps-h200-590.48.01.csv"
    res = CliRunner().invoke(main, ["gpus", "--from", str(gpu), "--processes", str(apps), "--json"])
    assert res.exit_code == 0, res.output
    (g,) = json.loads(res.stdout)["detection"]["gpus"]
    assert [p["pid"] for p in g["processes"]] == [p.pid for p in parsers.parse_nvidia_smi_apps(apps.read_text())["NVIDIA H200"]]
    assert len(g["processes"]) == 3
    alone = CliRunner().invoke(main, ["gpus", "--processes", str(apps)])
    assert alone.exit_code == 2 and "--processes goes with --from" in alone.output


def test_gpus_from_a_gb10_capture_keeps_the_captured_machines_memory():
    """Unified memory is the captured machine's (its saved system memory), never the reading host's."""
    import json

    from click.testing import CliRunner

    from servectl.cli import main

    res = CliRunner().invoke(main, ["gpus", "--from", str(DATA / "nvml-gb10-dgx-spark.json"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["detection"]
    captured = json.loads(_read("nvml-gb10-dgx-spark.json"))["system_memory"]
    assert data["gpus"][0]["memory_total_mib"] == captured["total"] / MIB
    assert data["system_memory_mib"] == captured["total"] / MIB
    table = json.loads(CliRunner().invoke(main, ["gpus", "--from", str(DATA / "gb10-nvidia-smi.txt"), "--json"]).stdout)
    assert table["detection"]["gpus"][0]["memory_total_mib"] is None  # the capture says "Not Supported": unknown
    assert table["detection"]["system_memory_mib"] is None and table["choice"]["profile"] == "dgx-spark"


@pytest.mark.parametrize(
    ("fixture", "driver", "cuda", "name"),
    [
        ("rtx5090d-576.52-nvidia-smi.txt", "576.52", "12.9", "NVIDIA GeForce RTX 5090 D"),
        ("rtx5090-595.71.05-nvidia-smi.txt", "595.71.05", "13.2", "NVIDIA GeForce RTX 5090"),
        ("rtx5090-rtx4090-580.82.09-nvidia-smi.txt", "580.82.09", "13.0", "NVIDIA GeForce RTX 5090"),
    ],
)
def test_driver_captures_parse(fixture, driver, cuda, name):
    gpus = parsers.parse_captured(_read(fixture))
    assert (gpus[0].driver_version, gpus[0].cuda_version, gpus[0].name) == (driver, cuda, name)
    assert gpus[0].memory_total_mib == 32607
    choice = choose_profile(d.detection_from_captured(_read(fixture)), load_catalog())
    assert choice.profile.name == "rtx-5090"


def test_rocm_capture_without_memory_figures():
    gpus = parsers.parse_captured(_read("rocm-smi-json-4x-mi300a.json"))
    assert [(g.gfx_target, g.memory_total_mib) for g in gpus] == [("gfx942", None)] * 4
    assert (
        choose_profile(d.detection_from_captured(_read("rocm-smi-json-4x-mi300a.json")), load_catalog()).profile.name
        == "rocm-4gpu"
    )
