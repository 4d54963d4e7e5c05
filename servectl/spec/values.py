"""vLLM flag values as vLLM itself checks them, beyond what its parser converts: each refused with exit 2
(UserError) naming the flag, before a plan or a rendering uses them. Pure.

What servectl.vllmenv.args already does at parse time: types, finite numbers, the bounds of vLLM's
config classes (`Field(ge=1)`: every parallel size, max_num_seqs, max_num_batched_tokens, block_size,
...), strict JSON. Here, what needs the model or the meaning of a JSON value:
- `--speculative-config`: a JSON object whose num_speculative_tokens is a whole number >= 1 and whose
  method is a string (vllm/config/speculative.py: SpeculativeConfig);
- `--limit-mm-per-prompt`: modality -> a count >= 0 (or {"count": N, ...});
- pipeline stages no more than the model's layers (vllm/distributed/utils.py get_pp_indices gives a stage
  no layer otherwise; `--pipeline-parallel-size` and `--nodes` alike);
- tensor parallel dividing the attention heads (vllm/config/parallel.py verify_with_model_config:
  "Total number of attention heads (H) must be divisible by tensor parallel size (T)").
"""

from __future__ import annotations

import json

from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError
from servectl.vllmenv import args as va


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_object(flags: list[va.Flag], name: str) -> dict | None:
    """The JSON object a flag holds (None when absent); UserError naming the flag when it is not one."""
    raw = va.get(flags, name)
    if raw is None or raw == "":
        return None
    try:
        from servectl.fsutil import loads_strict

        value = loads_strict(raw)
    except ValueError as exc:
        raise UserError(f"{name} is not valid JSON ({exc})", f"e.g. {name} '{{\"key\": 1}}'") from None
    if not isinstance(value, dict):
        raise UserError(f"{name} must be a JSON object, got {type(value).__name__}", f"e.g. {name} '{{\"key\": 1}}'")
    return value


def speculative_config(flags: list[va.Flag]) -> dict | None:
    config = json_object(flags, "--speculative-config")
    if config is None:
        return None
    depth = config.get("num_speculative_tokens")
    if depth is not None and not (_whole(depth) and depth >= 1):
        raise UserError(
            f"--speculative-config: num_speculative_tokens must be a whole number of at least 1, got {json.dumps(depth)}",
            'e.g. --speculative-config \'{"method": "mtp", "num_speculative_tokens": 2}\'',
        )
    method = config.get("method")
    if method is not None and not isinstance(method, str):
        raise UserError(f"--speculative-config: method must be a string, got {json.dumps(method)}", 'e.g. "method": "mtp"')
    return config


def mm_limits(flags: list[va.Flag]) -> dict[str, int]:
    """--limit-mm-per-prompt as modality -> count, checked (dotted keys --limit-mm-per-prompt.image N too)."""
    out: dict[str, int] = {}
    config = json_object(flags, "--limit-mm-per-prompt") or {}
    for modality, value in config.items():
        count = value.get("count", 1) if isinstance(value, dict) else value
        if not (_whole(count) and count >= 0):
            raise UserError(
                f"--limit-mm-per-prompt: {modality} must be a whole number of at least 0, got {json.dumps(value)}",
                "e.g. --limit-mm-per-prompt '{\"image\": 2}'",
            )
        out[modality] = count
    for f in flags:
        c = va.canonical(f.name)
        if c.startswith("--limit-mm-per-prompt.") and f.value is not None:
            try:
                count = int(f.value)
            except ValueError:
                count = -1
            if count < 0:
                raise UserError(f"{f.name} must be a whole number of at least 0, got {f.value!r}")
            out[c.split(".", 1)[1]] = count
    return out


def pipeline_fits(stages: int, recipe: ModelRecipe, flag: str = "--pipeline-parallel-size") -> None:
    """vLLM splits the decoder layers over the stages; more stages than layers leaves a stage with none."""
    layers = recipe.architecture.num_layers
    if stages > layers:
        raise UserError(
            f"{flag} {stages}: {recipe.name} has {layers} layers, so {stages} pipeline stages would leave "
            f"{stages - layers} of them without a layer",
            f"use at most {layers}",
        )


def tensor_parallel_fits(tp: int, recipe: ModelRecipe) -> None:
    heads = recipe.architecture.num_attention_heads
    if heads and heads % tp:
        fits = [d for d in range(1, heads + 1) if heads % d == 0]
        raise UserError(
            f"--tensor-parallel-size {tp}: {recipe.name} has {heads} attention heads, which vLLM requires "
            f"the tensor parallel size to divide",
            f"use one of {', '.join(map(str, fits))}",
        )


def check(flags: list[va.Flag], recipe: ModelRecipe) -> None:
    """Every check above on a launch's vLLM flags (UserError for the first that fails)."""
    speculative_config(flags)
    mm_limits(flags)
    pp = va.get(flags, "--pipeline-parallel-size")
    if pp not in (None, ""):
        pipeline_fits(int(pp), recipe)
    tp = va.get(flags, "--tensor-parallel-size")
    if tp not in (None, ""):
        tensor_parallel_fits(int(tp), recipe)
