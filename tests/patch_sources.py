"""Real vLLM release files for the patch tests: wheels downloaded once (cached), config files extracted.

The CUDA wheels (~430 MB) are cached under ~/.cache/servectl/wheels (shared with the memory
planner's reads); only vllm/transformers_utils/ and the dist-info are extracted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from servectl.paths import cache_dir

AFFECTED = "0.17.1"
FIXED = "0.19.1"


def wheel(version: str) -> Path:
    wheels = cache_dir() / "wheels"
    found = sorted(wheels.glob(f"vllm-{version}-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
                           f"vllm=={version}", "-d", str(wheels)], capture_output=True, text=True)
    found = sorted(wheels.glob(f"vllm-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        pytest.skip(f"package registry unreachable, cannot download vllm=={version}: {proc.stderr.strip().splitlines()[-1:]}")
    return found[0]


def extracted(version: str) -> Path:
    """A cached folder holding vllm/transformers_utils/ and vllm-X.dist-info/ of the release."""
    dest = cache_dir() / "vllm-src" / version
    if (dest / f"vllm-{version}.dist-info" / "METADATA").exists():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel(version)) as zf:
        for name in zf.namelist():
            if name.startswith("vllm/transformers_utils/") or name.startswith(f"vllm-{version}.dist-info/"):
                zf.extract(name, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def site_packages(version: str, into: Path) -> Path:
    """A throwaway "site-packages" with the release's files (tests may write to it)."""
    site = into / f"site-{version}"
    shutil.copytree(extracted(version), site)
    return site
