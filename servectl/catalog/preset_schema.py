"""Sampling presets (profiles/presets.yaml and the user config file)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from servectl.catalog.base import SCHEMA_VERSION, Strict


class SamplingPreset(Strict):
    """A named set of sampling values the proxy applies to requests for `<served name>-<preset>`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", description="Preset name; the virtual model name is `<served name>-<name>`.")
    family: str | None = Field(None, description="Preset family a recipe refers to (`sampling_presets: qwen3.5`); None for user presets.")
    description: str = Field("", description="What the preset is for.")
    enable_thinking: bool | None = Field(None, description="chat_template_kwargs.enable_thinking for chat requests (None: leave the template's default).")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling probability mass.")
    top_k: int | None = Field(None, ge=-1, description="Top-k cut-off (-1 or 0: off).")
    min_p: float | None = Field(None, ge=0, le=1, description="Minimum token probability relative to the most likely one.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="Presence penalty (OpenAI semantics).")
    repetition_penalty: float | None = Field(None, gt=0, description="Repetition penalty (1.0: off).")

    def sampling(self) -> dict[str, Any]:
        """The request-body sampling fields this preset sets (unset fields omitted)."""
        keys = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "repetition_penalty")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class PresetsFile(Strict):
    """profiles/presets.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    presets: list[SamplingPreset]
