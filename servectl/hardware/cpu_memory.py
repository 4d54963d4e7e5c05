"""The memory vLLM's CPU build sizes itself by, and the `cpu` profile with it (the catalog's figure is only a
placeholder: the host decides). Light on purpose: `plan` reads it without psutil or pydantic."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from servectl.catalog.gpu import GpuProfile


def probe_cpu_memory(sys_root: str = "/sys/devices/system") -> int:
    """Bytes: the MemTotal of the NUMA node of the first CPU this process may run on, as vLLM reads it
    (vllm/utils/cpu_resource_utils.py get_memory_node_info, used by cpu_worker.determine_available_memory
    and CpuPlatform.get_device_total_memory), else the whole machine's (vLLM's fallback without per-node meminfo)."""
    try:
        first = min(os.sched_getaffinity(0))
        node = next((p.name for p in Path(f"{sys_root}/cpu/cpu{first}").glob("node[0-9]*")), "node0")
        with open(f"{sys_root}/node/{node}/meminfo", encoding="utf-8") as fh:
            for line in fh.read(64 * 1024).splitlines():
                parts = line.split()
                if len(parts) >= 4 and parts[2] == "MemTotal:":
                    return int(parts[3]) * 1024
    except (OSError, ValueError, AttributeError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_profile_for_host(profile: GpuProfile, memory_bytes: int) -> GpuProfile:
    """The cpu profile with `memory_bytes` as its memory (other profiles unchanged). Pure."""
    if profile.vendor != "cpu":
        return profile
    return replace(profile, memory_gib=round(memory_bytes / 2**30, 2), usable_memory_gib=None)  # type: ignore[type-var]


def for_this_host(profile: GpuProfile) -> GpuProfile:
    """A profile as planned on this machine: the cpu profile gets this host's memory."""
    return cpu_profile_for_host(profile, probe_cpu_memory()) if profile.vendor == "cpu" else profile
