"""What `servectl plan` asks the planner for: built once from the command line, handed to service.build whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servectl.catalog.recipe import ModelRecipe


@dataclass(frozen=True)
class PlanRequest:
    """One plan: the model, the GPU it is for, the vLLM command line, and what to solve for. Option meanings are
    servectl.cli.options' (the same on render and up)."""

    model: str | ModelRecipe  # a catalog name, or a recipe already resolved (servectl.plan.any_model)
    gpu: str | None = None  # GPU profile; None: `detected`, else detected here
    vllm_tokens: tuple[str, ...] = ()  # the vLLM command line after MODEL, as written
    preset: str | None = None  # utilization preset; None: the detected one, else the profile's default
    detected: Any = None  # servectl.hardware.models.Choice the caller detected (and showed): its profile is used
    vllm_version: str | None = None  # the release planned for; None: the vLLM that will run
    estimate: bool | None = None  # subtract the CUDA-graph estimate (None: the env variable, else the release's default)
    target_context: int | None = None  # solve for the utilization that serves this context ...
    target_concurrency: int = 1  # ... for this many requests at once
    env: Mapping[str, str] = field(default_factory=dict)  # the user's VLLM_* variables that change memory
    model_path: str | None = None  # a local checkpoint: weights from its safetensors headers
    python: str | None = None  # the vLLM environment that will run it
    speculative: str | None = None  # mtp, mtp:N or off
    nodes: int | None = None  # >= 2: the multi-node layout, split per node
    force: bool = False  # past the guards that can be overridden
    after_separator: int = 0  # how many of vllm_tokens came after `--` (only warned about when unknown)
    own_options: tuple[str, ...] | None = None  # plan's own options (did-you-mean for a typo before `--`)
