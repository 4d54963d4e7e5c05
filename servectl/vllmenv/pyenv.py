"""Inspect a Python environment from outside, without importing its packages.

A target is either an interpreter (`--python PATH`: one `PATH -c` run reads sysconfig and
importlib.metadata there) or a bare site-packages folder (`--site-packages DIR`: the
*.dist-info METADATA files are read here with importlib.metadata's path finder). Either
way servectl never imports vLLM (DESIGN.md: servectl is the controller, not the engine).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from servectl.errors import UserError
from servectl.fsutil import JSON_LIMIT, read_json_capped, write_atomic
from servectl.paths import cache_dir

# Runs in the target interpreter: stdlib only, imports nothing from the environment's packages.
_PROBE = r"""
import importlib.metadata as md, json, sys, sysconfig
paths = sysconfig.get_paths()
versions = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name:
        versions.setdefault(name, d.version)
print(json.dumps({"purelib": paths["purelib"], "platlib": paths["platlib"], "executable": sys.executable,
                  "python_version": "%d.%d.%d" % sys.version_info[:3], "versions": versions}))
"""


@dataclass(frozen=True)
class Target:
    """Where a package lives and which distributions are installed there."""

    site_packages: Path
    python: Path | None = None  # None: a bare folder; verification then runs in servectl's interpreter
    versions: dict[str, str] = field(default_factory=dict)  # canonical distribution name -> version
    python_version: str | None = None

    def version_of(self, names: list[str]) -> tuple[str, str] | None:
        """(distribution, version) of the first of `names` installed here, or None."""
        for name in names:
            v = self.versions.get(canonicalize_name(name))
            if v is not None:
                return name, v
        return None

    def package_root(self, package: str) -> Path:
        return self.site_packages / package

    def interpreter(self) -> str:
        return str(self.python) if self.python else sys.executable

    def describe(self) -> str:
        return f"{self.python} ({self.site_packages})" if self.python else str(self.site_packages)


def canonicalize_name(name: str) -> str:
    """A distribution name as PEP 503 normalizes it (the spec's own one-liner; packaging.utils has the
    same, but importing it loads packaging.tags, a tenth of `servectl plan`'s start-up)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _canonical(versions: dict[str, str]) -> dict[str, str]:
    return {canonicalize_name(k): v for k, v in versions.items()}


def from_site_packages(directory: str | Path) -> Target:
    site = Path(directory).expanduser().resolve()
    if not site.is_dir():
        raise UserError(f"no such site-packages folder: {site}", "pass the folder that holds the package and its *.dist-info")
    from importlib import metadata  # only a bare folder is read here; a probed interpreter reads its own

    versions: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(name, dist.version)
    return Target(site_packages=site, versions=_canonical(versions))


def _probe_cache(exe: Path) -> Path:
    key = hashlib.sha256(str(exe.absolute()).encode()).hexdigest()[:24]
    return cache_dir() / "pyenv" / f"{key}.json"


def _stamp(data: dict, exe: Path) -> list[float]:
    """What changes when packages are installed or removed: the site-packages folders gain or lose a
    *.dist-info entry (their mtime moves), or the interpreter itself is replaced."""
    return [os.stat(p).st_mtime_ns for p in (exe, data["purelib"], data["platlib"])]


def _probe(exe: Path) -> dict:
    """The interpreter's paths and installed distributions; a cached answer while nothing was (un)installed
    (each run of the interpreter costs ~0.1 s of every plan and launch)."""
    cached = _probe_cache(exe)
    try:
        entry = read_json_capped(cached, JSON_LIMIT)
        if entry["stamp"] == _stamp(entry["data"], exe):
            return entry["data"]
    except (OSError, ValueError, KeyError, TypeError, UserError):
        pass
    import subprocess  # here: a cached probe (every later plan) starts no process

    try:
        out = subprocess.run([str(exe), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise UserError(
            f"cannot inspect {exe}: {detail.strip().splitlines()[-1] if detail.strip() else exc}", "is it a working python?"
        ) from None
    data = json.loads(out.stdout)
    try:
        write_atomic(cached, json.dumps({"stamp": _stamp(data, exe), "data": data}))
    except OSError:  # a read-only cache only costs the probe next time
        pass
    return data


def from_python(python: str | Path) -> Target:
    exe = Path(python).expanduser()
    if not exe.is_file():
        raise UserError(f"no interpreter at {exe}", "pass --python PATH to a python executable (e.g. VENV/bin/python)")
    data = _probe(exe)
    site = Path(data["purelib"])
    return Target(site_packages=site, python=exe, versions=_canonical(data["versions"]), python_version=data["python_version"])
