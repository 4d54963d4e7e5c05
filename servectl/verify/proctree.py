"""Memory of a local server's process tree (vLLM: API server, EngineCore, workers): `servectl status`
shows its RSS, the soak watches RSS and VRAM for growth."""

from __future__ import annotations

import psutil


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants; [] when pid is gone."""
    try:
        root = psutil.Process(pid)
        return [root.pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int | None:
    """Resident memory of a process and all its descendants, bytes; None when pid is gone."""
    pids = tree_pids(pid)
    if not pids:
        return None
    total = 0
    for p in pids:
        try:
            total += psutil.Process(p).memory_info().rss
        except psutil.Error:  # exited meanwhile, or not ours to read
            pass
    return total


def tree_vram(pid: int) -> int | None:
    """GPU memory NVML attributes to the process tree, bytes; None where NVML sees no GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no NVIDIA driver here: no GPU memory to attribute
        return None
    try:
        pids = set(tree_pids(pid))
        if not pids:
            return None
        total = 0
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid in pids and proc.usedGpuMemory:
                    total += proc.usedGpuMemory
        return total
    except pynvml.NVMLError:  # a device or process gone while read: the figure is unknown, shown as such
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:  # nothing to release
            pass
