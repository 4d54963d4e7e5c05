"""Real vLLM release files for the patch tests: vllm/transformers_utils/ and the dist-info METADATA of a
released wheel, read member by member over HTTP range requests and cached (no 430 MB wheel download)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import wheel_members
from servectl.paths import cache_dir

AFFECTED = "0.17.1"
FIXED = "0.19.1"


def extracted(version: str) -> Path:
    """A cached folder holding vllm/transformers_utils/ and the METADATA of vllm-X.dist-info/ of the release,
    read from the released wheel by HTTP range requests (tests/wheel_members.py), not a 430 MB download."""
    dest = cache_dir() / "vllm-src" / version
    if (dest / f"vllm-{version}.dist-info" / "METADATA").exists():
        return dest
    try:
        names = [n for n in wheel_members.namelist(version) if n.startswith("vllm/transformers_utils/")]
        files = wheel_members.members(version, names + [f"vllm-{version}.dist-info/METADATA"])
    except wheel_members.Unreachable as exc:
        pytest.skip(f"package registry unreachable: {exc}")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, text in files.items():
        if text is not None:
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def site_packages(version: str, into: Path) -> Path:
    """A throwaway "site-packages" with the release's files (tests may write to it)."""
    site = into / f"site-{version}"
    shutil.copytree(extracted(version), site)
    return site
