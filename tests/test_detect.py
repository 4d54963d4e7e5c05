"""Parsers on captured real outputs (tests/data/gpus/*.source cite them) and detect() on this machine."""

from pathlib import Path

from servectl.hardware import detect as d
from servectl.hardware import parsers
from servectl.hardware.detect import ProbeUnavailable

DATA = Path(__file__).parent / "data" / "gpus"


def test_gb10_csv_unified_memory_filled_from_system_memory():
    gpus = parsers.parse_captured((DATA / "gb10-query-gpu-noheader.csv").read_text())
    assert [g.name for g in gpus] == ["NVIDIA GB10"]
    assert gpus[0].unified_memory and gpus[0].memory_total_mib is None
    filled = parsers.with_unified_memory(gpus, {"total": 130663165952, "available": 121411960832})
    assert round(filled[0].memory_total_mib / 1024, 1) == 121.7
    assert round(filled[0].memory_free_mib / 1024, 1) == 113.1


def test_gb10_table_not_supported_memory():
    (g,) = parsers.parse_captured((DATA / "gb10-nvidia-smi.txt").read_text())
    assert g.name == "NVIDIA GB10" and g.unified_memory and g.driver_version == "580.95.05" and g.cuda_version == "13.0"


def test_rtx5090_table_two_devices_display_on_second():
    gpus = parsers.parse_captured((DATA / "rtx5090x2-nvidia-smi.txt").read_text())
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[0].memory_total_mib == 32607 and gpus[0].memory_free_mib == 32607 - 29324
    assert [g.display_active for g in gpus] == [False, True]
    assert gpus[0].driver_version == "610.57.04" and gpus[0].cuda_version == "13.3"


def test_nvml_dict_and_not_supported_memory():
    data = {
        "driver_version": "580.95.05",
        "cuda_driver_version": 13000,
        "devices": [
            {
                "index": 0,
                "name": "NVIDIA H100 80GB HBM3",
                "memory": {"total": 85520809984, "used": 0, "free": 85520809984},
                "compute_capability": [9, 0],
                "display_active": 0,
                "processes": [{"pid": 7, "used": 1048576 * 512}],
            },
            {
                "index": 1,
                "name": "NVIDIA GB10",
                "memory": {"error": "Not Supported"},
                "compute_capability": [12, 1],
                "display_active": {"error": "Not Supported"},
                "processes": {"error": "x"},
            },
        ],
    }
    h100, gb10 = parsers.parse_nvml(data)
    assert h100.compute_capability == "9.0" and h100.memory_total_mib == 81559 and h100.cuda_version == "13.0"
    assert h100.processes[0].used_mib == 512 and h100.display_active is False
    assert gb10.unified_memory and gb10.memory_total_mib is None and gb10.display_active is None


def test_detect_without_gpu_is_clean():
    def no_nvml():
        raise ProbeUnavailable("NVML: NVML Shared Library Not Found")

    def no_rocm():
        raise ProbeUnavailable("rocm-smi is not on PATH")

    det = d.detect(nvml=no_nvml, rocm=no_rocm, sysmem=lambda: {"total": 8 << 30, "available": 4 << 30}, display=lambda: False)
    assert det.gpus == [] and "no GPU found" in det.source and "NVML" in det.source
    assert det.system_memory_mib == 8192


def test_detect_real_probes_here():
    det = d.detect()  # the real NVML / rocm-smi / psutil probes of this machine
    assert det.system_memory_mib and det.system_memory_mib > 0
    assert det.gpus or det.source.startswith("no GPU found")
