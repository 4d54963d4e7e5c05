"""A recipe derived from a checkpoint: what a careful operator would set, each choice with its reason. Pure
over the `Source` (which does the reading): config.json, generation_config.json, the chat template and the
safetensors headers decide the architecture, the weight format and its guards, the weights' bytes, the parsers
(family table, checked against the vLLM release's registry), the sampling defaults and the hazards.

The per-GPU-profile settings (`--max-model-len` from a plan, the utilization preset) need the planner: they are
added by servectl.plan.any_model, which is what commands call."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from servectl.catalog.base import validate
from servectl.catalog.parser_schema import Family
from servectl.catalog.recipe import Choice, Derivation, ModelRecipe
from servectl.checkpoint import parsers
from servectl.checkpoint.quant import quantization
from servectl.checkpoint.ref import ModelRef, recipe_name
from servectl.checkpoint.files import Source, chat_template, read_json
from servectl.checkpoint.safetensors import sum_headers
from servectl.errors import UserError
from servectl.vllmenv import registries
from servectl.vllmenv.registries import Registry

# The generation_config.json keys vLLM turns into request defaults with `--generation-config auto`, its default
# (vllm/config/model.py get_diff_sampling_param).
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
GIB = 2**30


@dataclass(frozen=True)
class Derived:
    recipe: ModelRecipe  # no per-profile settings yet (servectl.plan.any_model adds them)
    checkpoint: parsers.Checkpoint


def _sampling(gen: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in SAMPLING_KEYS:
        value = (gen or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _min_vllm(arch: str, registry: Registry) -> tuple[str, str, str | None]:
    """(specifier, reason, warning) from the releases whose model registry has the architecture."""
    first = registries.first_release_with("architectures", arch)
    oldest = registries.known_releases()[0]
    warning = None
    if arch not in registry.architectures:
        warning = (
            f"vLLM {registry.vllm} does not register {arch} ({registry.source}); it may still run through "
            "vLLM's Transformers backend (--model-impl transformers)"
        )
    if first is None:
        return "", f"no release in servectl's table ({oldest} and later) registers {arch}", warning
    if first == oldest:
        return "", f"{arch} is registered in every release servectl knows ({oldest} and later)", warning
    return f">={first}", f"{arch} is first registered in vLLM {first} (model_executor/models/registry.py)", warning


def derive(
    source: Source, ref: ModelRef, registry: Registry, families: tuple[Family, ...], *, name: str | None = None
) -> Derived:
    """The recipe for the checkpoint `source` reads, with every choice explained (in recipe.derivation)."""
    choices: list[Choice] = []
    warnings: list[str] = []

    def choose(setting: str, value: Any, reason: str) -> None:
        choices.append(Choice(setting=setting, value="-" if value in (None, "", [], {}) else str(value), reason=reason))

    config = read_json(source, "config.json")
    if config is None:
        raise UserError(f"{source.label} has no config.json", "give a transformers checkpoint (config.json + safetensors)")
    hf_quant = None if config.get("quantization_config") else read_json(source, "hf_quant_config.json")
    quant = quantization(config, hf_quant)
    arch, arch_src = architecture(source)
    template, template_src = chat_template(source)
    gen = read_json(source, "generation_config.json")
    headers = source.safetensors_headers()
    if not headers:
        raise UserError(f"{source.label} has no *.safetensors weights", "vLLM loads safetensors: give a checkpoint that has them")
    wb = sum_headers(headers, source.label)
    if wb.loaded_bytes <= 0:
        raise UserError(f"{source.label}: its safetensors headers list no tensors", "is the checkpoint complete?")
    files = source.weight_files()
    ck = parsers.checkpoint_facts(source.name, config, template)
    fam = parsers.decide(families, ck, registry)

    commit = getattr(source, "commit", None)
    choose(
        "source",
        source.label,
        "hub repo, read through huggingface_hub (config, templates, safetensors headers by ranged reads; no weights)"
        if ref.repo
        else "local checkpoint directory",
    )
    if commit:
        choose("commit", commit, "the revision's commit the files were read at")
    choose(
        "family",
        fam.family or "unknown",
        "; ".join(fam.sources)
        if fam.family
        else f"no rule of servectl's family table matches model_type {', '.join(ck.model_types) or '?'}",
    )
    for setting, value, why in arch_src:
        choose(f"architecture.{setting}", value, why)
    choose("quantization", quant.quantization, quant.reason)
    if quant.required_dtype:
        choose("required_dtype", quant.required_dtype, quant.required_dtype_reason or "")
    choose(
        "weights_gib",
        f"{wb.loaded_bytes / GIB:.3f}",
        f"safetensors headers: {wb.tensors} tensors in {len(headers)} file(s), "
        "dtype bytes x shape" + (f"; {wb.skipped_bytes / GIB:.3f} GiB of MTP head not loaded" if wb.skipped_bytes else ""),
    )
    choose(
        "chat_template",
        template_src or "-",
        "where transformers finds it (chat_template.jinja, chat_template.json, tokenizer_config.json)"
        if template
        else "the checkpoint has no chat template: chat requests need --chat-template",
    )
    if not template:
        warnings.append(f"{source.label} has no chat template: /v1/chat/completions needs -- --chat-template FILE")
    for decision in (fam.reasoning, fam.tool_call):
        assert decision is not None
        choose(f"parsers.{decision.kind}", decision.parser, decision.reason)
        if decision.warning:
            warnings.append(decision.warning)
    sampling = _sampling(gen)
    choose(
        "sampling_defaults",
        ", ".join(f"{k} {v:g}" for k, v in sampling.items()) or "-",
        "generation_config.json: vLLM applies these as request defaults (--generation-config auto, its default; "
        "vllm/config/model.py get_diff_sampling_param)"
        if sampling
        else "no generation_config.json sampling values: vLLM's own defaults (temperature 1.0, top_p 1.0)",
    )
    hazards = list(fam.hazards)
    if arch.linear_attention_layers and "fp8-kv-gibberish" not in hazards:
        hazards.append("fp8-kv-gibberish")
    if hazards:
        choose(
            "hazards",
            ", ".join(hazards),
            "family table"
            + (
                "; FP8 KV cache on a hybrid linear-attention model turns "
                "output into gibberish (guard fp8-kv-cache, diagnosis rule fp8-kv-cache-hybrid)"
                if "fp8-kv-gibberish" in hazards
                else ""
            ),
        )
    min_vllm, min_reason, min_warning = _min_vllm(arch.hf_architecture, registry)
    choose("min_vllm", min_vllm or "any", min_reason)
    if min_warning:
        warnings.append(min_warning)
    served = ref.repo or source.name
    choose("served_model_name", served, "the repo id, as vLLM names a hub model" if ref.repo else "the directory's name")
    if isinstance(config.get("vision_config"), dict):
        choose("multimodal", "image", "config.json has a vision_config")
    warnings += list(getattr(source, "notes", None) or [])  # a hub source's optional files it could not look up

    recipe_fields: dict[str, Any] = {
        "name": name or recipe_name(ref),
        "title": f"{ref.label} ({fam.family or arch.hf_architecture}, {quant.quantization})",
        "repo": ref.repo or source.name,
        "served_model_name": served,
        "quantization": quant.quantization,
        "quantization_method": quant.method,
        "weights_gib": max(wb.loaded_bytes / GIB, 1e-6),
        "size_on_disk_gb": max(sum(files.values()) / 1e9, 1e-6) if files else None,
        "architecture": arch,
        "parsers": {
            "reasoning": fam.reasoning.parser if fam.reasoning else None,
            "tool_call": fam.tool_call.parser if fam.tool_call else None,
        },
        "multimodal": {"modalities": ["image"]} if isinstance(config.get("vision_config"), dict) else {},
        "required_dtype": quant.required_dtype,
        "min_vllm": min_vllm,
        "hazards": hazards,
        "model_path": str(ref.path) if ref.path else None,
        "revision": ref.revision,
        "sampling_defaults": sampling,
        "derivation": Derivation(
            source=ref.label, revision=ref.revision, commit=commit, vllm=registry.vllm, choices=choices, warnings=warnings
        ),
    }
    recipe = _validated(recipe_fields)
    return Derived(recipe=recipe, checkpoint=ck)


def architecture(source: Source) -> tuple[Any, list[tuple[str, str, str]]]:
    """(the architecture, [(figure, value, source)]) as vLLM builds it (checkpoint.derive, every figure with its
    source): the families whose KV-cache layouts servectl knows, and any other architecture read from config.json
    alone (full attention or Gated DeltaNet; sliding windows, MLA, Mamba and chunked attention refused)."""
    from servectl.checkpoint import derive as general

    d = general.derive(source, read_weights=False, generic=True)
    skip = ("architecture", "quantization", "weights")  # the recipe's own choices say these
    src = [("hf_architecture", d.architecture.hf_architecture, "config.json architectures[0]")]
    src += [(k, str(f.value), f.source) for k, f in d.figures.items() if k not in skip]
    src += [("note", n, "family rule") for n in d.notes]
    return d.architecture, src


# Derived recipes kept validated in the user cache (a few KiB each)
DERIVED_CACHE_ENTRIES = 64


def _validated(fields: dict[str, Any]) -> ModelRecipe:
    """The recipe through the catalog schema (a derived recipe obeys the same rules as a written one).

    The validated recipe is cached, keyed by the exact data validated (as JSON, in its order) and the schemas'
    source: the same data through the same schema gives the same recipe, so a checkpoint planned again skips
    pydantic (its import and schema build are most of a `plan DIR`). Data that fails is never cached."""
    import json
    from dataclasses import asdict, is_dataclass

    from servectl.catalog.load import disk_cached, schema_fingerprint

    data = {k: (asdict(v) if is_dataclass(v) and not isinstance(v, type) else v) for k, v in fields.items()}
    try:
        key = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError):  # not plain JSON data: validate every time
        return validate(ModelRecipe, data)
    return disk_cached(
        ["derived recipe", key],
        lambda: validate(ModelRecipe, data),
        ModelRecipe,
        schema_fingerprint(),
        folder="derived",
        keep=DERIVED_CACHE_ENTRIES,
    )


def with_profiles(derived: ModelRecipe, profiles: dict[str, Any], choices: list[Choice], warnings: list[str]) -> ModelRecipe:
    """The recipe with its per-profile settings and their explanations added."""
    d = derived.derivation
    assert d is not None
    return replace(
        derived, profiles=profiles, derivation=replace(d, choices=[*d.choices, *choices], warnings=[*d.warnings, *warnings])
    )
