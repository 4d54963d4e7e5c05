"""A checkpoint's config files as vLLM reads them: config.json (the text stack nested under `text_config` for
multimodal models, as transformers' get_text_config finds it), generation_config.json, tokenizer_config.json.
Every value read carries where it came from."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from servectl.checkpoint.source import CheckpointSource
from servectl.errors import UserError

# transformers PreTrainedConfig.get_text_config: the sub-config names that hold the text stack.
TEXT_CONFIG_KEYS = ("text_encoder", "decoder", "generator", "text_config")
MISSING = object()


@dataclass(frozen=True)
class Sourced:
    """A figure and where it came from (a config key, a vLLM rule with its file, or a default)."""

    value: Any
    source: str


def read_json(source: CheckpointSource, name: str, required: bool = False) -> dict | None:
    raw = source.read_small(name)
    if raw is None:
        if required:
            raise UserError(f"{source.name} has no {name}", "point at a Hugging Face checkpoint directory")
        return None
    try:
        # as transformers reads it: NaN and Infinity are accepted (Mamba configs write "time_step_limit": [0.0, Infinity]);
        # a figure servectl plans with is checked to be finite where it is read (ModelConfig.get)
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{source.name}/{name} is not valid JSON ({exc})", "is the file complete?") from None
    except RecursionError:
        raise UserError(f"{source.name}/{name} is nested too deep to read", "is the file complete?") from None
    if not isinstance(data, dict):
        raise UserError(f"{source.name}/{name} is not a JSON object")
    return data


def _finite(value: Any, where: str) -> Any:
    """A figure of the config as it is, unless it is a number that is not finite (NaN, Infinity, 1e400)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where} is {value}, not a finite number", "is the checkpoint's config.json damaged?")
    return value


@dataclass
class ModelConfig:
    """config.json with its text stack, and the family defaults that fill keys the file leaves out."""

    root: dict
    text: dict
    text_key: str | None  # "text_config" when the text stack is nested, else None
    defaults: dict = field(default_factory=dict)
    defaults_source: str = ""
    generation: dict | None = None
    tokenizer: dict | None = None

    def where(self, key: str) -> str:
        return f"config.json {self.text_key + '.' if self.text_key else ''}{key}"

    def has(self, key: str) -> bool:
        return key in self.text or key in self.defaults

    def get(self, key: str, default: Any = MISSING, rule: str = "") -> Sourced:
        """A text-stack key: the file's value, else the family's transformers default, else `default`."""
        if key in self.text:
            return Sourced(_finite(self.text[key], self.where(key)), self.where(key))
        if key in self.defaults:
            return Sourced(self.defaults[key], f"default of {self.defaults_source} ({key})")
        if default is MISSING:
            raise UserError(f"config.json has no {key!r}", "is this a Hugging Face config.json of a decoder model?")
        return Sourced(default, rule or f"default ({key} not in config.json)")

    def value(self, key: str, default: Any = None) -> Any:
        return self.get(key, default).value

    def root_get(self, key: str) -> Sourced | None:
        if key in self.root:
            return Sourced(_finite(self.root[key], f"config.json {key}"), f"config.json {key}")
        if self.text_key and key in self.text:
            return Sourced(_finite(self.text[key], self.where(key)), self.where(key))
        return None


def load(source: CheckpointSource) -> ModelConfig:
    root = read_json(source, "config.json", required=True)
    assert root is not None  # required: a missing file raised
    text_key = None
    text = root
    found = [k for k in TEXT_CONFIG_KEYS if isinstance(root.get(k), dict)]
    if len(found) > 1:
        raise UserError(
            f"{source.name}/config.json has several text configs ({', '.join(found)})",
            "vLLM cannot pick one either (transformers get_text_config)",
        )
    if found:
        text_key = found[0]
        text = root[text_key]
    return ModelConfig(
        root=root,
        text=text,
        text_key=text_key,
        generation=read_json(source, "generation_config.json"),
        tokenizer=read_json(source, "tokenizer_config.json"),
    )
