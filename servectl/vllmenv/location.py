"""Finding the vLLM environment servectl drives (never imported into servectl's own process).

Order: an explicit --python, then $SERVECTL_VLLM_PYTHON, then the environment under the venvs folder that fits
the recipe and GPU profile (servectl.vllmenv.envs): the same platform (cpu / cuda / rocm), a release the recipe
accepts, a CUDA build the driver runs, no known bug of kind "guard" for the setting (when a lookup is given);
the chooser's pick first when several fit, else the newest. None fits: a UserError naming the one
`servectl bootstrap ...` command that makes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from servectl.catalog import versions
from servectl.catalog import vllm_install as vi
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError
from servectl.vllmenv.envs import EnvInfo, list_envs, venvs_root

ENV_VAR = "SERVECTL_VLLM_PYTHON"
_PLATFORM = {"cpu": "cpu", "nvidia": "cuda", "amd": "rocm"}


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def explicit_python(explicit: str | os.PathLike | None) -> Path | None:
    """--python, else $SERVECTL_VLLM_PYTHON (a UserError when the one named is not an interpreter)."""
    named, where = (explicit, "--python") if explicit else (os.environ.get(ENV_VAR), ENV_VAR)
    if not named:
        return None
    path = Path(named).expanduser()
    if not _usable(path):
        raise UserError(f"no vLLM environment at {path} ({where})", "pass the python of a vLLM venv (VENV/bin/python)")
    return path


def why_not(
    env: EnvInfo,
    *,
    platform: str,
    recipe: ModelRecipe | None = None,
    compute_capability: str | None = None,
    driver: str | None = None,
    guards: Callable[[str], list[str]] | None = None,
) -> str | None:
    """Why an environment does not fit (None: it fits). `guards(release)` names known bugs of kind guard."""
    if env.release is None:
        return "no vLLM installed"
    if env.platform != platform:
        return f"a {env.platform} build"
    if recipe is not None and not versions.satisfies(env.release, recipe.min_vllm):
        return f"{recipe.name} needs vLLM {recipe.min_vllm}"
    if platform == "cuda":
        major = env.cuda_major
        if driver and major and not vi.version_at_least(driver, vi.CUDA_DRIVER_FLOOR.get(major, "0")):
            return f"a CUDA {major} build, driver {driver} runs CUDA {major} from {vi.CUDA_DRIVER_FLOOR[major]}"
        if compute_capability in vi.CUDA12_EXCLUDED_COMPUTE_CAPABILITIES and major == "12":
            return f"a CUDA 12 build, which lacks sm_{compute_capability.replace('.', '')} kernels"
    bugs = guards(env.release) if guards else []
    return f"known bug {', '.join(bugs)}" if bugs else None


def find_environment(
    recipe: ModelRecipe | None = None,
    profile: GpuProfile | None = None,
    *,
    driver: str | None = None,
    compute_capability: str | None = None,
    guards: Callable[[str], list[str]] | None = None,
    prefer: str | None = None,
    platform: str | None = None,
) -> tuple[EnvInfo | None, list[tuple[EnvInfo, str]]]:
    """(the environment that fits, the others with why not). `prefer` is a venv name chosen first when it fits."""
    platform = platform or (_PLATFORM.get(profile.vendor, "cuda") if profile is not None else None)
    envs = list_envs()
    if not envs:  # nothing to choose from: no need to probe this machine's GPUs
        return None, []
    if platform is None:  # no profile: the platforms present decide; several -> this machine's GPU
        present = {e.platform for e in envs if e.release}
        platform = present.pop() if len(present) == 1 else _this_machine_platform()
    cc = compute_capability or (profile.compute_capability if profile is not None else None)
    fitting, others = [], []
    for env in envs:
        why = why_not(env, platform=platform, recipe=recipe, compute_capability=cc, driver=driver, guards=guards)
        (others.append((env, why)) if why else fitting.append(env))
    fitting.sort(key=lambda e: e.name != prefer)  # stable: newest first otherwise
    return (fitting[0] if fitting else None), others


def _this_machine_platform() -> str:
    from servectl.hardware.detect import detect

    gpus = detect().gpus
    return _PLATFORM.get(gpus[0].vendor, "cpu") if gpus else "cpu"


def bootstrap_command(recipe: str | None, profile: str | None, *, cpu: bool = False) -> str:
    """The one command that makes the environment `up` looks for."""
    words = ["servectl", "bootstrap"] + (["--cpu"] if cpu else [])
    if recipe:
        words += ["--recipe", recipe]
    if profile and not cpu:
        words += ["--gpu", profile]
    return " ".join(words)


def missing_environment(
    recipe: ModelRecipe | None,
    profile: GpuProfile | None,
    others: list[tuple[EnvInfo, str]],
    explicit_gpu: bool = True,
    docker: bool = True,
) -> UserError:
    """The error `up` and friends give when no environment fits: the one command that makes it."""
    cpu = profile is not None and profile.vendor == "cpu"
    cmd = bootstrap_command(recipe.name if recipe else None, profile.name if (profile and explicit_gpu) else None, cpu=cpu)
    what = " ".join(filter(None, [f"for {recipe.name}" if recipe else None, f"on {profile.name}" if profile else None]))
    seen = f" ({'; '.join(f'{e.name}: {why}' for e, why in others[:3])})" if others else ""
    hint = f"run `{cmd}`, which makes it; or pass --python PATH / set {ENV_VAR}"
    if docker and profile is not None and profile.container is not None:
        hint += "; or use --runtime docker (the profile's image)"
    return UserError(f"no vLLM environment {what} in {venvs_root()}{seen}".replace("  ", " "), hint)


def find_vllm_python(
    explicit: str | os.PathLike | None = None,
    *,
    recipe: ModelRecipe | None = None,
    profile: GpuProfile | None = None,
    any_env: bool = False,
    **fit,
) -> Path:
    """The interpreter of the vLLM environment, or a UserError saying how to make one.

    `any_env`: when none fits the recipe and profile, take the newest environment there is (the tiny model's
    generator, vLLM's argument parser for renders: any vLLM does)."""
    path = explicit_python(explicit)
    if path is not None:
        return path
    env, others = find_environment(recipe, profile, **fit)
    if env is None and any_env:
        env = next((e for e, _ in others if e.release), None)
    if env is not None and _usable(env.python):
        return env.python
    raise missing_environment(recipe, profile, others)


def environment_for_launch(
    recipe: ModelRecipe, profile: GpuProfile, python: str | None = None, *, explicit_gpu: bool = True, host=None
) -> Path:
    """The environment `up` runs: --python / $SERVECTL_VLLM_PYTHON, else the one that fits the recipe on this
    machine's GPU (driver, compute capability, known bugs of kind guard), the chooser's pick first; else the
    UserError with the bootstrap command that makes it."""
    path = explicit_python(python)
    if path is not None:
        return path
    from servectl.catalog.known_bugs import BugContext, applicable_bugs
    from servectl.vllmenv.choose import choose, launch_features

    platform = _PLATFORM.get(profile.vendor, "cuda")
    if host is None and platform != "cpu":
        from servectl.hardware.host import probe_host

        host = probe_host()
    on_host = host is not None and host.vendor == profile.vendor
    cc = (host.compute_capability if on_host else None) or profile.compute_capability
    driver = host.driver_version if on_host and platform == "cuda" else None

    def guards(release: str) -> list[str]:
        ctx = BugContext(
            vllm=release,
            platform=platform,
            compute_capability=cc if platform == "cuda" else None,
            gfx_target=((host.gfx_target if on_host else None) or profile.gfx_target) if platform == "rocm" else None,
            quantization=recipe.quantization,
            recipe=recipe.name,
            quantization_method=recipe.quantization_method,
            architecture=recipe.architecture.hf_architecture,
            features=launch_features(recipe, profile),
        )
        # a guard whose catalog entry gives a workaround does not rule an environment out: servectl's own settings
        # add it there (spec.known_bug_guards.workarounds); bootstrap's chooser still prefers a release without the bug
        return [b.id for b in applicable_bugs(ctx) if b.kind == "guard" and not b.workaround]

    prefer = None
    if host is not None:
        try:
            prefer = choose(host, profile=profile, recipe=recipe).env_name
        except UserError:
            prefer = None
    env, others = find_environment(recipe, profile, driver=driver, compute_capability=cc, guards=guards, prefer=prefer)
    if env is not None and _usable(env.python):
        return env.python
    raise missing_environment(recipe, profile, others, explicit_gpu=explicit_gpu)


def vllm_binary_for(recipe: ModelRecipe, profile: GpuProfile) -> Path | None:
    """`bin/vllm` of the environment that fits (for renders that name the binary: systemd), or None."""
    env, _ = find_environment(recipe, profile)
    if env is None:
        return None
    exe = env.path / "bin" / "vllm"
    return exe if _usable(exe) else None


def resolve_target(python: str | os.PathLike | None = None, site_packages: str | os.PathLike | None = None):
    """--site-packages DIR, else --python PATH, else the vLLM environment servectl drives (find_vllm_python)."""
    from servectl.vllmenv import pyenv

    if python and site_packages:
        raise UserError("--python and --site-packages are exclusive", "pass one of them")
    if site_packages:
        return pyenv.from_site_packages(Path(site_packages))
    return pyenv.from_python(find_vllm_python(python))
