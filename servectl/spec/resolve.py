"""Deployment resolution: recipe + GPU profile + user overrides -> a guarded LaunchSpec. Pure.

Two sources of settings:
- `card=True`: the model card's published launch for that pair, verbatim (token for token);
- otherwise servectl's own settings: parsers, dtype, multimodal limits, the profile's utilization
  preset, the recipe's per-profile settings, then the user's flags (last wins, in place).
Host and port stay out of the vLLM args: each renderer places them (argv binds, docker publishes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

from servectl.spec import guards, known_bug_guards, layout, speculative, values
from servectl.vllmenv import args as va
from servectl.errors import UserError
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import CardLaunch, ModelRecipe
from servectl.spec.models import LaunchOptions, LaunchSpec


@dataclass(frozen=True)
class Request:
    """What the user asked for on top of the catalog."""

    recipe: ModelRecipe
    profile: GpuProfile
    overrides: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    options: LaunchOptions = field(default_factory=LaunchOptions)
    card: bool = False
    preset: str | None = None
    force: bool = False
    # vLLM's options as the target's own environment reports them (then unknown flags are refused);
    # None: the bundled table, and flags it does not know are warned about (refused with strict).
    vllm_options: va.VllmOptions | None = None
    strict: bool = False
    speculative: str | None = None  # --speculative mtp[:N] | off (None: as the flags say)
    vllm_version: str | None = None  # release that will run it, when known (guards); else the image tag's
    checkpoint_mtp: bool | None = None  # the checkpoint's headers list mtp.* tensors (None: not on disk)
    nodes: int | None = None  # --nodes N >= 2: the multi-node layout (spec.layout), applied before the guards
    # known bugs that a servectl patch fixes: warn (plan, render), or leave them to the caller's own patch check (up)
    warn_patches: bool = True
    known_bugs: bool = True  # check the known-bug catalog here (plan checks it itself, for the release it plans for)
    # the caller's environment where the server inherits it (up, plan): known-bug features read VLLM_* from it
    runtime_env: dict[str, str] = field(default_factory=dict)


def card_profile_names(recipe: ModelRecipe) -> list[str]:
    """Profiles the model card has settings for; a generic card covers every profile that runs the model."""
    card = recipe.card
    if card is None:
        return []
    names = list(card.profile_launches) + list(card.profiles)
    if card.generic:
        names += [p for p in recipe.profiles if p not in names]
    return names


def card_launch(recipe: ModelRecipe, profile: str) -> CardLaunch:
    """The card's complete launch for one profile, or a UserError naming the pairs that have one."""
    card = recipe.card
    if card is not None:
        if profile in card.profile_launches:
            return card.profile_launches[profile]
        if card.base is not None and (profile in card.profiles or (card.generic and profile in recipe.profiles)):
            extra = card.profiles.get(profile, [])
            return replace(card.base, args=[*card.base.args, *extra])
    pairs = ", ".join(f"{recipe.name} --gpu {p}" for p in card_profile_names(recipe)) or "none"
    raise UserError(
        f"the model card of {recipe.name} publishes no settings for {profile}",
        f"card settings exist for: {pairs}; drop --card for servectl's own settings",
    )


def card_image(recipe: ModelRecipe, profile: str) -> str | None:
    """The image the model card's launch names for this profile (the card's tag), or None."""
    try:
        return card_launch(recipe, profile).image
    except UserError:
        return None


def preset_of(profile: GpuProfile, preset: str | None) -> str:
    """--preset NAME of the profile (a UserError naming the ones it has), else the profile's default."""
    chosen = preset or profile.default_preset
    if chosen not in profile.presets:
        raise UserError(f"--preset {chosen}: profile {profile.name} has no such preset", f"presets: {', '.join(profile.presets)}")
    return chosen


def default_name(recipe: ModelRecipe) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", recipe.name)


def _published(mapping: str) -> tuple[str, int]:
    """docker -p HOST:HOSTPORT:CONTAINERPORT (or HOSTPORT:CONTAINERPORT, which binds every interface)."""
    parts = mapping.split(":")
    host = parts[0] if len(parts) == 3 else "0.0.0.0"
    return host, int(parts[-2])


def registered_parsers(recipe: ModelRecipe, release: str | None) -> tuple[str | None, str | None, list[str]]:
    """(reasoning, tool-call parser, warnings): the recipe's parsers that the release that runs registers. A parser
    it lacks is left out with a warning (vLLM would refuse to start); an unknown release keeps them as written."""
    from servectl.vllmenv.registries import static

    reasoning, tool = recipe.parsers.reasoning, recipe.parsers.tool_call
    registry = static(release) if release else None
    if registry is None:
        return reasoning, tool, []
    warnings = []
    if reasoning and not registry.has("reasoning", reasoning):
        warnings.append(f"vLLM {registry.vllm} registers no reasoning parser {reasoning!r}: left out for this launch")
        reasoning = None
    if tool and not registry.has("tool_call", tool):
        warnings.append(f"vLLM {registry.vllm} registers no tool-call parser {tool!r}: left out for this launch")
        tool = None
    return reasoning, tool, warnings


def _servectl_flags(req: Request, release: str | None = None, warnings: list[str] | None = None) -> list[va.Flag]:
    recipe, profile = req.recipe, req.profile
    flags: list[va.Flag] = [va.Flag("--served-model-name", recipe.served_model_name)]
    if recipe.revision:
        flags.append(va.Flag("--revision", recipe.revision))
    reasoning, tool, dropped = registered_parsers(recipe, release)
    if warnings is not None:
        warnings += dropped
    if reasoning:
        flags.append(va.Flag("--reasoning-parser", reasoning))
    if tool:
        flags += [va.Flag("--enable-auto-tool-choice", None), va.Flag("--tool-call-parser", tool)]
    if recipe.required_dtype and profile.vendor == "amd":
        flags.append(va.Flag("--dtype", recipe.required_dtype))
    if recipe.multimodal.limits:
        flags.append(va.Flag("--limit-mm-per-prompt", json.dumps(recipe.multimodal.limits)))
    preset = preset_of(profile, req.preset)
    if profile.vendor != "cpu":  # the CPU build sizes its KV cache by VLLM_CPU_KVCACHE_SPACE, not a utilization
        flags.append(va.Flag("--gpu-memory-utilization", f"{profile.presets[preset].gpu_memory_utilization:g}"))
    settings = recipe.profiles.get(profile.name)
    if settings:
        flags = va.merge(flags, va.parse_args(settings.args))
    return flags


def _parse_overrides(tokens: list[str], options: va.VllmOptions | None = None) -> list[va.Flag]:
    try:
        return va.parse_args(tokens, options)
    except ValueError as exc:
        raise UserError(f"cannot read the vLLM arguments: {exc}", "pass them as --flag value after `--`") from None


def unknown_flag_problem(req: Request, flags: list[va.Flag]) -> tuple[str | None, str | None]:
    """(refusal, warning) for user flags vLLM does not know: refused when the target's vLLM was asked
    (or with strict), else one warning naming every flag that could not be checked."""
    table = req.vllm_options or va.bundled_options()
    unknown = va.unknown_flags(flags, table)
    if not unknown:
        return None, None

    def named(flag: str) -> str:
        close = table.suggest(flag)
        return f"{flag} (did you mean {' or '.join(close)}?)" if close else flag

    names = ", ".join(named(f) for f in unknown)
    if req.vllm_options is not None:
        return f"vLLM {table.vllm} has no option {names}", None
    if req.strict:
        return (
            f"cannot check {names} against the target's vLLM (unknown to vLLM {table.vllm}, servectl's table); "
            "--strict refuses flags it cannot check"
        ), None
    return None, (
        f"not checked against the target's vLLM: {names} (unknown to vLLM {table.vllm}); "
        "pass --python of the target's vLLM environment to check, --strict to refuse"
    )


def resolve(req: Request) -> LaunchSpec:
    """Build the LaunchSpec for a request, applying the guard table (spec.guards: UserError unless forced)."""
    recipe, profile, opts = req.recipe, req.profile, req.options
    warnings: list[str] = []
    avoided: list[str] = []
    unlisted = False
    if req.card:
        launch = card_launch(recipe, profile.name)
        overrides = _parse_overrides(req.overrides, req.vllm_options)
        flags = va.merge(va.parse_args(launch.args), overrides)
        env, secrets = {}, []
        for item in launch.env:
            name, sep, value = item.partition("=")
            if sep:
                env[name] = value
            else:
                secrets.append(name)
        model = launch.model
        image = launch.image or (profile.container.image if profile.container else None)
        name = opts.name or launch.container_name or default_name(recipe)
        cache_host = launch.volumes[0].split(":")[0] if launch.volumes else opts.cache_dir
        host, port = _published(launch.ports[0]) if launch.ports else (opts.host, opts.port)
        if launch.style == "serve":
            warnings.append(
                "the card's `vllm serve` command binds all interfaces (vLLM's default); "
                "servectl's own settings (without --card) bind 127.0.0.1"
            )
        remove, launch_style = launch.remove, launch.style
    else:
        # a derived recipe's settings are derived for every profile; one left out is explained by what refuses it
        # (the quantization guard, or the plan: vLLM's own memory refusal), not by a missing tuning
        unlisted = profile.name not in recipe.profiles and recipe.derivation is None
        overrides = _parse_overrides(req.overrides, req.vllm_options)
        image = opts.image or card_image(recipe, profile.name) or (profile.container.image if profile.container else None)
        release = req.vllm_version or speculative.image_version(image)
        own = _servectl_flags(req, release, warnings)
        flags = va.merge(own, overrides)
        env = {**profile.env, **(recipe.profiles[profile.name].env if profile.name in recipe.profiles else {})}
        # servectl's own settings step around a known bug whose catalog entry names flags that avoid it; a flag
        # you set yourself wins (and meets the guard or warning)
        for bug, fix, note in known_bug_guards.workarounds(
            recipe, profile, flags, {**req.runtime_env, **env, **req.env}, release
        ):
            if not any(va.has(overrides, f.name) for f in fix):
                own, avoided = va.merge(own, fix), [*avoided, bug.id]
                warnings.append(note)
        flags = va.merge(own, overrides)
        secrets = list(opts.secrets)
        model = opts.model_path or recipe.model_path or recipe.repo
        name = opts.name or default_name(recipe)
        cache_host, host, port, remove, launch_style = opts.cache_dir, opts.host, opts.port, True, None
    env = {**env, **req.env}
    if opts.api_key_env and "VLLM_API_KEY" not in secrets:
        secrets.append("VLLM_API_KEY")

    refusal, warning = unknown_flag_problem(req, overrides)
    if refusal:
        raise UserError(refusal, "check the spelling; `vllm serve --help` lists vLLM's options")
    if warning:
        warnings.append(warning)

    nodes = req.nodes if req.nodes and req.nodes >= 2 else 1
    if nodes > 1:  # the layout --nodes reaches is guarded as if its flags were written by hand
        tp, pp = layout.layout(profile, nodes)
        values.pipeline_fits(pp, recipe, "--nodes")
        flags = layout.with_layout(flags, tp, pp)
    values.check(flags, recipe)  # vLLM's own checks of the values (JSON shapes, stages vs layers, heads vs TP)
    spec_choice = speculative.parse_choice(req.speculative) if req.speculative else None
    release = req.vllm_version or speculative.image_version(image)
    mtp = speculative.apply(recipe, profile, flags, spec_choice, vllm_version=release)
    flags = mtp.flags
    warnings += mtp.warnings
    bugs = known_bug_guards.check(
        recipe, profile, flags, {**req.runtime_env, **env}, release if req.known_bugs else None, warn_patches=req.warn_patches
    )
    warnings += bugs.warnings
    # servectl's guard table and the known-bug catalog's guards, under the one --force rule
    problems = guards.evaluate(
        guards.GuardInput(
            recipe,
            profile,
            flags,
            req.env,
            nodes=nodes,
            vllm_version=release,
            checkpoint_mtp=req.checkpoint_mtp,
            unlisted=unlisted,
        )
    )
    warnings += guards.enforce(problems + bugs.violations, req.force)

    tp = int(va.get(flags, "--tensor-parallel-size") or 1)
    pp = int(va.get(flags, "--pipeline-parallel-size") or 1)
    return LaunchSpec(
        name=name,
        recipe=recipe.name,
        profile=profile.name,
        model_recipe=recipe,
        gpu_profile=profile,
        card=req.card,
        model=model,
        served_model_name=va.get(flags, "--served-model-name"),
        vllm_args=va.to_tokens(flags),
        env=env,
        secret_env=secrets,
        image=image,
        host=host,
        port=port,
        cache_host_path=cache_host,
        ray_dashboard_host=opts.ray_dashboard_host,
        container=profile.container,
        vendor=profile.vendor,
        gpu_count=max(1, min(tp * pp, profile.count)),
        remove=remove,
        argv_binds=not (req.card and launch_style == "serve"),
        warnings=warnings,
        avoided_bugs=tuple(avoided),
    )
