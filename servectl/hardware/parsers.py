"""Pure parsers of GPU facts: what the probes return (NVML dicts, rocm-smi JSON) and captured tool
outputs, tested on real captures in tests/data/gpus/: `parse_nvml`, `parse_nvidia_smi_xml`
(`nvidia-smi -q -x`), `parse_nvidia_smi_csv` (`nvidia-smi --query-gpu=... --format=csv`),
`parse_nvidia_smi_table` (plain `nvidia-smi`), `parse_rocm_smi_json` / `parse_rocm_smi_csv`, and the
processes of `nvidia-smi --query-compute-apps` (`parse_nvidia_smi_apps`, attached by `with_processes`).
`parse_captured` recognises the format by its shape.

Unified memory (DGX Spark, GB10): NVML answers NOT_SUPPORTED for memory info and nvidia-smi prints
"Not Supported" / "[N/A]", so the device's memory is the system's (`with_unified_memory`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from servectl.errors import UserError
from servectl.hardware.models import DetectedGpu, GpuProcess

MIB = 1024 * 1024


# --------------------------------------------------------------------------- pure parsers


def _mib(value: Any) -> float | None:
    """'32607 MiB' / '32607' / '[N/A]' / 'Not Supported' -> MiB or None."""
    if value is None:
        return None
    m = re.search(r"([0-9]+(?:\.[0-9]+)?)\s*(MiB|GiB|B)?", str(value))
    if not m or re.search(r"N/A|Not Supported", str(value), re.I):
        return None
    num, unit = float(m.group(1)), (m.group(2) or "MiB")
    return num * 1024 if unit == "GiB" else num / MIB if unit == "B" else num


def _cuda_version(v: Any) -> str | None:
    if isinstance(v, int):  # NVML: 13000 -> 13.0
        return f"{v // 1000}.{(v % 1000) // 10}"
    return str(v) if v not in (None, "", "N/A") and not isinstance(v, dict) else None


def parse_nvml(data: Mapping[str, Any]) -> list[DetectedGpu]:
    """probe_nvml()'s dict -> DetectedGpu list. Memory NOT_SUPPORTED marks a unified-memory device."""
    gpus = []
    for d in data.get("devices", []):
        mem = d.get("memory") or {}
        unified = "error" in mem
        cc = d.get("compute_capability")
        disp = d.get("display_active")
        procs = d.get("processes")
        gpus.append(
            DetectedGpu(
                index=d["index"],
                vendor="nvidia",
                name=d["name"],
                memory_total_mib=None if unified else mem["total"] / MIB,
                memory_used_mib=None if unified else mem["used"] / MIB,
                memory_free_mib=None if unified else mem["free"] / MIB,
                compute_capability=f"{cc[0]}.{cc[1]}" if isinstance(cc, list) and len(cc) == 2 else None,
                driver_version=data.get("driver_version"),
                cuda_version=_cuda_version(data.get("cuda_driver_version")),
                display_active=bool(disp) if isinstance(disp, int) else None,
                unified_memory=unified,
                processes=[GpuProcess(pid=p["pid"], used_mib=(p["used"] / MIB if p.get("used") else None)) for p in procs]
                if isinstance(procs, list)
                else [],
            )
        )
    return gpus


def parse_nvidia_smi_xml(text: str) -> list[DetectedGpu]:
    """`nvidia-smi -q -x` output -> DetectedGpu list."""
    try:
        root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", text))
    except ET.ParseError as exc:
        raise UserError(f"not nvidia-smi XML: {exc}") from None

    def get(node: ET.Element, path: str) -> str | None:
        el = node.find(path)
        return el.text.strip() if el is not None and el.text else None

    driver, cuda = get(root, "driver_version"), get(root, "cuda_version")
    out = []
    for i, g in enumerate(root.findall("gpu")):
        total = _mib(get(g, "fb_memory_usage/total"))
        procs = []
        for p in g.findall("processes/process_info"):
            pid = get(p, "pid")
            if pid and pid.isdigit():
                procs.append(GpuProcess(pid=int(pid), name=get(p, "process_name") or "", used_mib=_mib(get(p, "used_memory"))))
        disp = get(g, "display_active")
        out.append(
            DetectedGpu(
                index=int(get(g, "minor_number") or i) if (get(g, "minor_number") or "").isdigit() else i,
                vendor="nvidia",
                name=get(g, "product_name") or "unknown",
                memory_total_mib=total,
                memory_used_mib=_mib(get(g, "fb_memory_usage/used")),
                memory_free_mib=_mib(get(g, "fb_memory_usage/free")),
                compute_capability=None,
                driver_version=driver,
                cuda_version=cuda if cuda and cuda != "Not Found" else None,
                display_active={"Enabled": True, "Disabled": False}.get(disp or ""),
                unified_memory=total is None,
                processes=procs,
            )
        )
    return out


def parse_nvidia_smi_csv(text: str) -> list[DetectedGpu]:
    """`nvidia-smi --query-gpu=index,name,memory.total,... --format=csv[,noheader,nounits]` -> DetectedGpu list.

    With a header the columns are read by name; without one, the order index,name,memory.total,memory.used,
    memory.free is assumed (the common query)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return []
    header = [h.strip().split(" ")[0] for h in lines[0].split(",")]
    if "name" in header:
        rows = lines[1:]
    else:
        header = ["index", "name", "memory.total", "memory.used", "memory.free"]
        rows = lines
    out = []
    for n, row in enumerate(rows):
        cells = dict(zip(header, (c.strip() for c in row.split(",")), strict=False))
        total = _mib(cells.get("memory.total"))
        disp = cells.get("display_active", "")
        cc = cells.get("compute_cap")
        out.append(
            DetectedGpu(
                index=int(cells["index"]) if cells.get("index", "").isdigit() else n,
                vendor="nvidia",
                name=cells.get("name", "unknown"),
                memory_total_mib=total,
                memory_used_mib=_mib(cells.get("memory.used")),
                memory_free_mib=_mib(cells.get("memory.free")),
                compute_capability=cc if cc and re.fullmatch(r"\d+\.\d+", cc) else None,
                driver_version=cells.get("driver_version"),
                display_active={"Enabled": True, "Disabled": False}.get(disp),
                unified_memory=total is None and "memory.total" in cells,
            )
        )
    return out


_TABLE_HEAD = re.compile(r"NVIDIA-SMI\s+\S+\s+(?:Driver|KMD) Version:\s*(?P<driver>\S+)\s+CUDA(?: UMD)? Version:\s*(?P<cuda>\S+)")
_TABLE_ROW1 = re.compile(r"^\|\s+(?P<index>\d+)\s+(?P<name>.+?)\s+(?:On|Off)\s+\|\s+\S+\s+(?P<disp>On|Off)\s+\|")
_TABLE_ROW2 = re.compile(r"^\|.*\|\s*(?:(?P<used>\d+)MiB\s*/\s*(?P<total>\d+)MiB|(?P<ns>Not Supported))\s*\|")


def parse_nvidia_smi_table(text: str) -> list[DetectedGpu]:
    """Plain `nvidia-smi` output (the table pasted in most bug reports) -> DetectedGpu list."""
    head = _TABLE_HEAD.search(text)
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = _TABLE_ROW1.match(line)
        if not m or i + 1 >= len(lines):
            continue
        m2 = _TABLE_ROW2.match(lines[i + 1])
        total = float(m2.group("total")) if m2 and m2.group("total") else None
        used = float(m2.group("used")) if m2 and m2.group("used") else None
        out.append(
            DetectedGpu(
                index=int(m.group("index")),
                vendor="nvidia",
                name=m.group("name").strip(),
                memory_total_mib=total,
                memory_used_mib=used,
                memory_free_mib=(total - used) if total is not None and used is not None else None,
                driver_version=head.group("driver") if head else None,
                cuda_version=head.group("cuda") if head else None,
                display_active=m.group("disp") == "On",
                unified_memory=bool(m2 and m2.group("ns")),
            )
        )
    return out


def parse_rocm_smi_json(data: str | Mapping[str, Any]) -> list[DetectedGpu]:
    """`rocm-smi --showproductname --showmeminfo vram --json` -> DetectedGpu list (one per cardN)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise UserError(f"not rocm-smi JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise UserError("not rocm-smi JSON: the top level is not an object")
    driver = (data.get("system") or {}).get("Driver version")
    out = []
    for key, card in data.items():
        m = re.fullmatch(r"card(\d+)", key)
        if not m or not isinstance(card, dict):
            continue
        total = card.get("VRAM Total Memory (B)")
        used = card.get("VRAM Total Used Memory (B)")
        total_mib = int(total) / MIB if total and str(total).isdigit() else None
        used_mib = int(used) / MIB if used and str(used).isdigit() else None
        gfx = card.get("GFX Version")
        out.append(
            DetectedGpu(
                index=int(m.group(1)),
                vendor="amd",
                name=card.get("Card Series") or card.get("Device Name") or card.get("Card Model") or "AMD GPU",
                memory_total_mib=total_mib,
                memory_used_mib=used_mib,
                memory_free_mib=(total_mib - used_mib) if total_mib is not None and used_mib is not None else None,
                gfx_target=gfx if gfx and gfx != "N/A" else None,
                driver_version=driver,
            )
        )
    return out


def parse_rocm_smi_csv(text: str) -> list[DetectedGpu]:
    """`rocm-smi --showproductname --showmeminfo vram --csv` -> DetectedGpu list (same columns as the JSON keys)."""
    rows = list(csv.DictReader(io.StringIO(text.strip())))
    return parse_rocm_smi_json({r.pop("device"): r for r in rows if r.get("device", "").startswith("card")})


def parse_nvidia_smi_apps(text: str) -> dict[str, list[GpuProcess]]:
    """`nvidia-smi --query-compute-apps=...,gpu_name,pid,process_name,used_gpu_memory --format=csv` -> processes by GPU name."""
    rows = list(csv.reader(io.StringIO(text.strip()), skipinitialspace=True))
    if not rows:
        return {}
    header = [h.split(" ")[0] for h in rows[0]]
    out: dict[str, list[GpuProcess]] = {}
    for row in rows[1:]:
        cells = dict(zip(header, row, strict=False))
        if not cells.get("pid", "").isdigit():
            continue
        out.setdefault(cells.get("gpu_name", ""), []).append(
            GpuProcess(pid=int(cells["pid"]), name=cells.get("process_name", ""), used_mib=_mib(cells.get("used_gpu_memory")))
        )
    return out


def with_processes(gpus: list[DetectedGpu], apps: Mapping[str, list[GpuProcess]]) -> list[DetectedGpu]:
    """Attach the processes of `parse_nvidia_smi_apps` to the GPUs of the same name (pure)."""
    return [g.model_copy(update={"processes": [*g.processes, *apps.get(g.name, [])]}) for g in gpus]


def parse_captured(text: str) -> list[DetectedGpu]:
    """Any of the captured formats above, recognised by its shape."""
    s = text.lstrip()
    if s.startswith("<?xml") or s.startswith("<nvidia_smi_log"):
        return parse_nvidia_smi_xml(text)
    if s.startswith("{") and '"devices"' in s:  # a saved probe_nvml() dict
        data = json.loads(s)
        return with_unified_memory(parse_nvml(data), data.get("system_memory"))
    if s.startswith("{"):
        return parse_rocm_smi_json(text)
    if s.startswith("device,") and "VRAM Total Memory" in s.splitlines()[0]:
        return parse_rocm_smi_csv(text)
    if "used_gpu_memory" in s.splitlines()[0]:
        raise UserError(
            "this is a process list (--query-compute-apps), not a GPU list",
            "capture `nvidia-smi --query-gpu=index,name,memory.total,memory.used,memory.free --format=csv`",
        )
    if "NVIDIA-SMI" in text:
        return parse_nvidia_smi_table(text)
    return parse_nvidia_smi_csv(text)


def with_unified_memory(gpus: list[DetectedGpu], sysmem: Mapping[str, Any] | None) -> list[DetectedGpu]:
    """Fill the memory of unified-memory devices from system memory (bytes) — pure."""
    if not sysmem:
        return gpus
    total, avail = sysmem["total"] / MIB, sysmem["available"] / MIB
    return [
        g.model_copy(update={"memory_total_mib": total, "memory_free_mib": avail, "memory_used_mib": total - avail})
        if g.unified_memory and g.memory_total_mib is None
        else g
        for g in gpus
    ]
