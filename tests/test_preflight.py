"""Pre-flight checks (pure) with catalog recipes and profiles."""

from servectl.catalog.load import load_catalog
from servectl.hardware.preflight import preflight, utilization_that_fits
from servectl.hardware.models import DetectedGpu, Detection, GpuProcess

CAT = load_catalog()


def _det(free_mib: float, driver: str = "580.95.05") -> Detection:
    g = DetectedGpu(
        index=0,
        vendor="nvidia",
        name="NVIDIA GeForce RTX 5090",
        memory_total_mib=32607,
        memory_used_mib=32607 - free_mib,
        memory_free_mib=free_mib,
        compute_capability="12.0",
        driver_version=driver,
        processes=[GpuProcess(pid=4242, used_mib=3000)],
    )
    return Detection(gpus=[g], source="test")


def test_free_memory_below_plan_names_processes_and_fix():
    (p,) = [
        p
        for p in preflight(CAT.model("qwen3.5-35b-a3b-nvfp4"), CAT.gpu("rtx-5090"), _det(29000), utilization=0.95)
        if p.check == "free-memory"
    ]
    assert "pid 4242" in p.what
    assert p.fix.startswith(f"--gpu-memory-utilization {utilization_that_fits(29000 / 1024, 32607 / 1024):.2f}")
    assert utilization_that_fits(29000 / 1024, 32607 / 1024) == 0.87


def test_old_vllm_old_driver_and_fp4_on_rocm():
    recipe = CAT.model("qwen3.5-35b-a3b-nvfp4")
    checks = {
        p.check
        for p in preflight(recipe, CAT.gpu("rtx-5090"), _det(32000, driver="570.86.15"), utilization=0.9, vllm_version="0.16.0")
    }
    assert checks == {"vllm-version", "driver"}
    assert preflight(recipe, CAT.gpu("rtx-5090"), _det(32000), utilization=0.9, vllm_version="0.17.1") == []
    quant = preflight(recipe, CAT.gpu("rocm-4gpu"), Detection(source="t"), vllm_version="0.18.0")
    assert [p.check for p in quant] == ["quantization"] and "Blackwell" in quant[0].fix
