"""GPU detection: probes that touch the machine, split from pure parsers of what they return.

Probes (edges): `probe_nvml()` (nvidia-ml-py), `probe_rocm_smi()` (`rocm-smi --json`), `probe_system_memory()`
(psutil). Each returns a plain dict, or raises `ProbeUnavailable` with the reason.

The pure parsers of what probes and captured tool outputs return live in servectl.hardware.parsers.

Unified memory (DGX Spark, GB10): NVML answers NOT_SUPPORTED for memory info and nvidia-smi prints
"Not Supported" / "[N/A]", so the device's memory is the system's (psutil), as NVIDIA's DGX Spark known-issues
page says ("nvidia-smi reports memory usage not supported").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from servectl.errors import UserError
from servectl.fsutil import read_text_capped
from servectl.hardware.models import DetectedGpu, Detection
from servectl.hardware.parsers import (
    MIB,
    parse_captured,
    parse_nvidia_smi_apps,
    parse_nvml,
    parse_rocm_smi_json,
    with_processes,
    with_unified_memory,
)


class ProbeUnavailable(Exception):
    """A probe could not run here (no driver, no tool); carries the reason."""


# --------------------------------------------------------------------------- probes (side effects)


def probe_nvml() -> dict[str, Any]:
    """Everything servectl needs from NVML, as plain data. Raises ProbeUnavailable when nvmlInit fails."""
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ProbeUnavailable(f"nvidia-ml-py is not installed: {exc}") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise ProbeUnavailable(f"NVML: {exc}") from None

    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    def attempt(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except pynvml.NVMLError as exc:
            return {"error": str(exc)}

    try:
        out: dict[str, Any] = {
            "driver_version": text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver_version": attempt(pynvml.nvmlSystemGetCudaDriverVersion_v2),
            "devices": [],
        }
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = attempt(lambda: pynvml.nvmlDeviceGetMemoryInfo(h))
            procs = attempt(lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(h))
            out["devices"].append(
                {
                    "index": i,
                    "name": text(pynvml.nvmlDeviceGetName(h)),
                    "memory": mem if isinstance(mem, dict) else {"total": mem.total, "used": mem.used, "free": mem.free},
                    "compute_capability": list(attempt(lambda: pynvml.nvmlDeviceGetCudaComputeCapability(h))),
                    "display_active": attempt(lambda: pynvml.nvmlDeviceGetDisplayActive(h)),
                    "processes": procs
                    if isinstance(procs, dict)
                    else [{"pid": p.pid, "used": getattr(p, "usedGpuMemory", None)} for p in procs],
                }
            )
        return out
    finally:
        pynvml.nvmlShutdown()


def probe_rocm_smi(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> dict[str, Any]:
    """`rocm-smi --showproductname --showmeminfo vram --showdriverversion --json` parsed as JSON."""
    exe = shutil.which("rocm-smi")
    if not exe:
        raise ProbeUnavailable("rocm-smi is not on PATH")
    proc = run(
        [exe, "--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if proc.returncode != 0:
        raise ProbeUnavailable(f"rocm-smi exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ProbeUnavailable("rocm-smi printed no JSON") from None


def probe_system_memory() -> dict[str, Any]:
    """System memory (psutil.virtual_memory) in bytes."""
    import psutil

    vm = psutil.virtual_memory()
    return {"total": vm.total, "available": vm.available}


def probe_display(env: Mapping[str, str] | None = None) -> bool:
    """A display server runs for this session (X11 or Wayland)."""
    env = os.environ if env is None else env
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


# --------------------------------------------------------------------------- detection


def detect(
    nvml: Callable[[], dict] = probe_nvml,
    rocm: Callable[[], dict] = probe_rocm_smi,
    sysmem: Callable[[], dict] = probe_system_memory,
    display: Callable[[], bool] = probe_display,
) -> Detection:
    """Probe NVIDIA (NVML), then AMD (rocm-smi); none -> a Detection with no GPUs and the reasons."""
    notes: list[str] = []
    mem = sysmem()
    gpus: list[DetectedGpu] = []
    source = ""
    try:
        gpus = parse_nvml(nvml())
        source = "NVML (nvidia-ml-py)"
    except ProbeUnavailable as exc:
        notes.append(f"no NVIDIA GPU: {exc}")
    if not gpus:
        try:
            gpus = parse_rocm_smi_json(rocm())
            source = "rocm-smi --json"
        except ProbeUnavailable as exc:
            notes.append(f"no AMD GPU: {exc}")
    if gpus and any(g.unified_memory for g in gpus):
        notes.append("unified memory: device memory is system memory (psutil)")
        gpus = with_unified_memory(gpus, mem)
    if not gpus:
        source = "no GPU found (" + "; ".join(notes) + ")"
    disp = display() or any(g.display_active for g in gpus)
    return Detection(
        gpus=gpus,
        display=disp,
        system_memory_mib=mem["total"] / MIB,
        system_available_mib=mem["available"] / MIB,
        source=source,
        notes=notes,
    )


def captured_system_memory(text: str) -> dict[str, Any] | None:
    """The system memory a saved probe_nvml() dict recorded (`system_memory`, bytes), else None: a captured
    output describes its own machine, never the one reading it."""
    s = text.lstrip()
    if not (s.startswith("{") and '"system_memory"' in s):
        return None
    try:
        mem = json.loads(s).get("system_memory")
    except (ValueError, AttributeError):
        return None
    ok = isinstance(mem, dict) and all(isinstance(mem.get(k), (int, float)) for k in ("total", "available"))
    return mem if ok else None


def detection_from_captured(
    text: str,
    *,
    display: bool | None = None,
    sysmem: Mapping[str, Any] | None = None,
    source: str = "captured output",
    processes: str | None = None,
) -> Detection:
    """A Detection from a captured tool output (tests, `servectl gpus --from FILE [--processes APPS]`);
    `processes` is a captured `nvidia-smi --query-compute-apps=... --format=csv`."""
    if sysmem is None:
        sysmem = captured_system_memory(text)
    gpus = with_unified_memory(parse_captured(text), sysmem)
    if processes is not None:
        gpus = with_processes(gpus, parse_nvidia_smi_apps(processes))
    disp = any(g.display_active for g in gpus) if display is None else display
    return Detection(
        gpus=gpus,
        display=disp,
        source=source,
        system_memory_mib=sysmem["total"] / MIB if sysmem else None,
        system_available_mib=sysmem["available"] / MIB if sysmem else None,
    )


CAPTURE_LIMIT = 16 * 2**20  # nvidia-smi -q -x of a 16-GPU host is ~1 MiB
_CAPTURE_HINT = "capture `nvidia-smi -q -x`, `nvidia-smi --query-gpu=... --format=csv` or `rocm-smi --json`"
# what a malformed capture raises in the parsers (ElementTree's ParseError is a SyntaxError)
_PARSE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, SyntaxError)


def read_capture(path: Path) -> str:
    """A captured nvidia-smi / rocm-smi output (`--from FILE`): text of at most CAPTURE_LIMIT bytes, checked to
    parse; a UserError (exit 2) otherwise."""
    text = read_text_capped(path, CAPTURE_LIMIT, str(path))
    try:
        parse_captured(text)
    except _PARSE_ERRORS as exc:
        raise UserError(
            f"cannot read {path.name} as nvidia-smi or rocm-smi output ({type(exc).__name__}: {exc})", _CAPTURE_HINT
        ) from None
    return text


def detection_from_files(captured: Path, processes: Path | None = None) -> Detection:
    """`--from FILE [--processes APPS]`: the capture's own figures only (unified memory (GB10) is the captured
    machine's, not this one's)."""
    apps = read_text_capped(processes, CAPTURE_LIMIT, str(processes)) if processes is not None else None
    try:
        return detection_from_captured(
            read_text_capped(captured, CAPTURE_LIMIT, str(captured)), source=f"captured {captured.name}", processes=apps
        )
    except _PARSE_ERRORS as exc:
        raise UserError(
            f"cannot read {captured.name} as nvidia-smi or rocm-smi output ({type(exc).__name__}: {exc})", _CAPTURE_HINT
        ) from None
