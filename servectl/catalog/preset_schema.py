"""Sampling presets (profiles/presets.yaml and the user config file)."""

from __future__ import annotations

from typing import Annotated, Any

from servectl.catalog.base import DOTTED_KEY, Ge, Gt, Le, SCHEMA_VERSION, require_match, schema


@schema
class SamplingPreset:
    """A named set of sampling values the proxy applies to requests for `<served name>-<preset>`."""

    name: str  # Preset name; the virtual model name is `<served name>-<name>`.
    family: str | None = None  # Preset family a recipe refers to (`sampling_presets: qwen3.5`); None for user presets.
    description: str = ""  # What the preset is for.
    enable_thinking: bool | None = None  # chat_template_kwargs.enable_thinking for chat requests (None: leave the template's default).
    temperature: Annotated[float, Ge(0)] | None = None  # Sampling temperature.
    top_p: Annotated[float, Gt(0), Le(1)] | None = None  # Nucleus sampling probability mass.
    top_k: Annotated[int, Ge(-1)] | None = None  # Top-k cut-off (-1 or 0: off).
    min_p: Annotated[float, Ge(0), Le(1)] | None = None  # Minimum token probability relative to the most likely one.
    presence_penalty: Annotated[float, Ge(-2), Le(2)] | None = None  # Presence penalty (OpenAI semantics).
    repetition_penalty: Annotated[float, Gt(0)] | None = None  # Repetition penalty (1.0: off).

    def __post_init__(self) -> None:
        require_match(self.name, DOTTED_KEY, "name")

    def sampling(self) -> dict[str, Any]:
        """The request-body sampling fields this preset sets (unset fields omitted)."""
        keys = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "repetition_penalty")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@schema
class PresetsFile:
    """profiles/presets.yaml."""

    schema_version: Annotated[int, Ge(1), Le(SCHEMA_VERSION)]  # Catalog schema version.
    presets: list[SamplingPreset]
