"""The machine a vLLM environment is made for: its GPU and driver (or ROCm), CPU architecture, Python and glibc.

`host_from(detection, ...)` is pure: a Detection (probed, or parsed from a captured nvidia-smi / rocm-smi
output) plus the platform facts. `probe_host()` fills them from this machine: `probe_platform()` (architecture,
glibc, the Python that makes the venv) and `probe_rocm_version()` (ROCm's own version file).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from servectl.errors import UserError
from servectl.hardware.models import Detection


@dataclass(frozen=True)
class Host:
    """What decides which vLLM build runs on a machine."""

    vendor: str | None  # nvidia | amd | None (no GPU)
    gpu_name: str | None = None
    gpu_count: int = 0
    compute_capability: str | None = None  # NVIDIA
    gfx_target: str | None = None  # AMD
    driver_version: str | None = None  # NVIDIA driver (the ground truth for CUDA compatibility)
    cuda_version: str | None = None  # the newest CUDA the driver supports (nvidia-smi header, NVML)
    rocm_version: str | None = None
    arch: str | None = None  # CPU architecture (platform.machine()); None: not known (a captured output)
    python_version: str | None = None  # of the interpreter that makes the venv
    glibc_version: str | None = None
    source: str = "this machine"
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        gpu = "no GPU"
        if self.vendor == "nvidia":
            gpu = (
                f"{self.gpu_count} x {self.gpu_name or 'NVIDIA GPU'}"
                + (f" (sm_{self.compute_capability.replace('.', '')})" if self.compute_capability else "")
                + f", driver {self.driver_version or 'unknown'}"
                + (f" (CUDA {self.cuda_version})" if self.cuda_version else "")
            )
        elif self.vendor == "amd":
            gpu = (
                f"{self.gpu_count} x {self.gpu_name or 'AMD GPU'}"
                + (f" ({self.gfx_target})" if self.gfx_target else "")
                + f", ROCm {self.rocm_version or 'unknown'}"
            )
        return (
            f"{gpu}; {self.arch or '?'}, Python {self.python_version or '?'}, glibc {self.glibc_version or '?'} ({self.source})"
        )

    def to_json(self) -> dict:
        return {
            "vendor": self.vendor,
            "gpu_name": self.gpu_name,
            "gpu_count": self.gpu_count,
            "compute_capability": self.compute_capability,
            "gfx_target": self.gfx_target,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "rocm_version": self.rocm_version,
            "arch": self.arch,
            "python_version": self.python_version,
            "glibc_version": self.glibc_version,
            "source": self.source,
            "notes": list(self.notes),
        }


_VERSION = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}$")
_EXAMPLE = {"--driver": "575.57.08", "--python-version": "3.12.3", "--glibc": "2.39", "--rocm-version": "7.2.1"}


@dataclass(frozen=True)
class PlatformFacts:
    arch: str
    python_version: str
    glibc_version: str | None


# --------------------------------------------------------------------------- probes (side effects)

_PY_VERSION = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


def python_version_of(python: str | os.PathLike | None) -> str:
    """X.Y.Z of an interpreter (one run of it), or of the one running servectl."""
    if python is None:
        return "%d.%d.%d" % sys.version_info[:3]
    try:
        out = subprocess.run([str(python), "-I", "-c", _PY_VERSION], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"cannot run {python}: {exc}", "pass --base-python PATH of a working python3") from None
    return out.stdout.strip()


def probe_platform(python: str | os.PathLike | None = None) -> PlatformFacts:
    """Architecture, the Python that will make the venv, and glibc (`os.confstr`, as pip reads it for manylinux)."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    m = re.search(r"(\d+\.\d+)", libc)
    return PlatformFacts(
        arch=platform.machine() or "x86_64", python_version=python_version_of(python), glibc_version=m.group(1) if m else None
    )


def probe_rocm_version(root: str | None = None) -> str | None:
    """ROCm's own version file (`$ROCM_PATH/.info/version`, e.g. `6.4.1-120`); None without ROCm."""
    base = Path(root or os.environ.get("ROCM_PATH") or "/opt/rocm")
    try:
        text = (base / ".info" / "version").read_text(encoding="utf-8", errors="replace")[:200]
    except OSError:
        return None
    m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------- pure


def host_from(
    detection: Detection,
    facts: PlatformFacts | None,
    *,
    rocm_version: str | None = None,
    source: str = "this machine",
    notes: tuple[str, ...] = (),
) -> Host:
    """Host facts from a detection (first vendor's devices) and the platform facts (None: another machine's
    capture, whose platform is not known)."""
    arch, py, glibc = (facts.arch, facts.python_version, facts.glibc_version) if facts else (None, None, None)
    if not detection.gpus:
        return Host(vendor=None, source=source, notes=notes, arch=arch, python_version=py, glibc_version=glibc)
    first = detection.gpus[0]
    same = [g for g in detection.gpus if g.vendor == first.vendor]
    return Host(
        vendor=first.vendor,
        gpu_name=first.name,
        gpu_count=len(same),
        compute_capability=first.compute_capability,
        gfx_target=first.gfx_target,
        driver_version=first.driver_version if first.vendor == "nvidia" else None,
        cuda_version=first.cuda_version,
        rocm_version=rocm_version if first.vendor == "amd" else None,
        source=source,
        notes=notes,
        arch=arch,
        python_version=py,
        glibc_version=glibc,
    )


def with_overrides(
    host: Host,
    *,
    driver: str | None = None,
    arch: str | None = None,
    python_version: str | None = None,
    glibc: str | None = None,
    rocm_version: str | None = None,
) -> Host:
    """The host with facts the user states (planning for another machine, or a fact no probe can read);
    a version that is not dotted numbers is bad input."""
    for option, value in (
        ("--driver", driver),
        ("--python-version", python_version),
        ("--glibc", glibc),
        ("--rocm-version", rocm_version),
    ):
        if value is not None and not _VERSION.match(value):
            raise UserError(f"{option} {value!r} is not a version", f"give dotted numbers, e.g. {option} {_EXAMPLE[option]}")
    return replace(
        host,
        driver_version=driver or host.driver_version,
        arch=arch or host.arch,
        python_version=python_version or host.python_version,
        glibc_version=glibc or host.glibc_version,
        rocm_version=rocm_version or host.rocm_version,
    )


def probe_host(base_python: str | None = None) -> Host:
    """This machine: its GPUs (servectl.hardware.detect), platform and ROCm version."""
    from servectl.hardware.detect import detect

    detection = detect()
    amd = any(g.vendor == "amd" for g in detection.gpus)
    return host_from(detection, probe_platform(base_python), rocm_version=probe_rocm_version() if amd else None)


def captured_host(detection: Detection) -> Host:
    """Another machine, from a captured nvidia-smi / rocm-smi output: its platform is not known (the chooser
    infers or assumes, and says so; the user may state it)."""
    return host_from(detection, None, source=detection.source)


def host_and_detection(
    captured: str | None = None,
    *,
    source: str = "captured output",
    base_python: str | None = None,
    driver: str | None = None,
    arch: str | None = None,
    python_version: str | None = None,
    glibc: str | None = None,
    rocm_version: str | None = None,
) -> tuple[Host, Detection]:
    """The host a vLLM environment is made for, and the detection its GPU profile is matched from: this machine,
    or the machine of a captured nvidia-smi / rocm-smi output (`captured`, its text); stated facts win."""
    from servectl.hardware.detect import detect, detection_from_captured

    if captured is not None:
        detection = detection_from_captured(captured, source=source)
        host = captured_host(detection)
        if base_python is not None and python_version is None:
            python_version = python_version_of(base_python)
    else:
        detection = detect()
        amd = any(g.vendor == "amd" for g in detection.gpus)
        host = host_from(detection, probe_platform(base_python), rocm_version=probe_rocm_version() if amd else None)
    return with_overrides(
        host, driver=driver, arch=arch, python_version=python_version, glibc=glibc, rocm_version=rocm_version
    ), detection
