"""The host CPU features vLLM's CPU platform asks about, read the way vLLM reads them.

vllm/platforms/cpu.py asks torch: `torch.cpu._is_avx512_bf16_supported()` (the accelerated Gated DeltaNet
backend, 0.29+) and `torch.cpu._is_amx_tile_supported()` (0.26-0.28). So the probe runs those calls in the vLLM
environment's own interpreter (servectl never imports torch); without an environment it falls back to the
kernel's /proc/cpuinfo flags (avx512_bf16, amx_tile), which name the same CPUID bits.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from servectl import paths
from servectl.errors import UserError
from servectl.fsutil import JSON_LIMIT, read_json_capped, write_atomic


@dataclass(frozen=True)
class CpuFeatures:
    """What vLLM's CPU platform asks the host (torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported)."""

    avx512_bf16: bool = False
    amx: bool = False
    source: str = "assumed: neither AVX-512 BF16 nor AMX"

    def describe(self) -> str:
        isa = [n for n, on in (("AVX-512 BF16", self.avx512_bf16), ("AMX", self.amx)) if on]
        return f"{' + '.join(isa) or 'no AVX-512 BF16, no AMX'} ({self.source})"


_TORCH_PROBE = (
    "import json, torch\n"
    "print(json.dumps({'avx512_bf16': bool(torch.cpu._is_avx512_bf16_supported()),"
    " 'amx': bool(torch.cpu._is_amx_tile_supported()),"
    " 'capability': torch.backends.cpu.get_cpu_capability(), 'torch': torch.__version__}))\n"
)


def parse_cpuinfo_flags(text: str) -> str:
    """Pure: the first flags line of /proc/cpuinfo ('' when there is none)."""
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return line.split(":", 1)[1].strip()
    return ""


def parse_cpuinfo(text: str) -> CpuFeatures:
    """Pure: the flags line of /proc/cpuinfo -> features."""
    flags = set(parse_cpuinfo_flags(text).split())
    return CpuFeatures(avx512_bf16="avx512_bf16" in flags, amx="amx_tile" in flags, source="/proc/cpuinfo flags")


def parse_torch_probe(output: str, python: str) -> CpuFeatures:
    """Pure: the JSON line the torch probe prints -> features."""
    data = json.loads(output.strip().splitlines()[-1])
    return CpuFeatures(
        avx512_bf16=bool(data["avx512_bf16"]),
        amx=bool(data["amx"]),
        source=f"torch {data.get('torch', '?')} in {python} reports {data.get('capability', '?')}",
    )


def _cache_file() -> Path:
    return paths.cache_dir() / "cpu-features.json"


def probe(python: str | None, timeout_s: float = 120) -> CpuFeatures:
    """The features the vLLM environment's torch reports (cached per interpreter), else /proc/cpuinfo's."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    if python:
        # the interpreter and the CPU it runs on (a migrated VM gets a new entry)
        flags = hashlib.sha256(parse_cpuinfo_flags(cpuinfo).encode()).hexdigest()[:12]
        try:
            key = f"{os.path.realpath(python)}:{os.stat(python).st_mtime_ns}:{flags}"
        except OSError:
            key = None
        if key:
            cached = _read_cache().get(key)
            if cached:
                return CpuFeatures(**cached)
            import subprocess  # here: a cached probe (every plan after the first) starts no process

            try:
                out = subprocess.run(
                    [python, "-c", _TORCH_PROBE],
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
                )
                if out.returncode == 0:
                    found = parse_torch_probe(out.stdout, python)
                    data = _read_cache()
                    data[key] = asdict(found)
                    write_atomic(_cache_file(), json.dumps(data, indent=2, sort_keys=True) + "\n")
                    return found
            except (OSError, subprocess.SubprocessError, ValueError, KeyError):
                pass
    return parse_cpuinfo(cpuinfo) if cpuinfo else CpuFeatures()


def _read_cache() -> dict:
    try:
        data = read_json_capped(_cache_file(), JSON_LIMIT)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, UserError):
        return {}
