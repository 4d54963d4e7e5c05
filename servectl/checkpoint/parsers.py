"""The reasoning and tool-call parsers a checkpoint needs, from the family table (profiles/parsers.yaml), its
config and its chat template, checked against the parser names the vLLM release that runs registers. Pure.

For each kind the first rule that matches the checkpoint and names that kind decides (see the table's header).
A parser the release does not register is left out with a warning, never replaced by a guess."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from servectl.catalog.parser_schema import Family, FamilyMatch, ParserChoice
from servectl.vllmenv.registries import Registry

KINDS = ("reasoning", "tool_call")


@dataclass(frozen=True)
class Checkpoint:
    """What the table matches on."""

    name: str  # repo id or directory name
    model_types: tuple[str, ...]  # config.json model_type and text_config.model_type
    architecture: str | None  # architectures[0]
    template: str  # the chat template ("" when it has none)


@dataclass(frozen=True)
class ParserDecision:
    kind: str  # reasoning | tool_call
    parser: str | None
    reason: str
    warning: str | None = None


@dataclass(frozen=True)
class FamilyDecision:
    family: str | None  # the first matching rule's name
    sources: list[str] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)
    reasoning: ParserDecision | None = None
    tool_call: ParserDecision | None = None


def checkpoint_facts(name: str, config: dict[str, Any], template: str | None) -> Checkpoint:
    types = [config.get("model_type")]
    text = config.get("text_config")
    if isinstance(text, dict):
        types.append(text.get("model_type"))
    archs = config.get("architectures") or []
    return Checkpoint(
        name=name,
        model_types=tuple(t for t in types if isinstance(t, str)),
        architecture=archs[0] if archs and isinstance(archs[0], str) else None,
        template=template or "",
    )


def matches(m: FamilyMatch, ck: Checkpoint) -> bool:
    if m.model_types and not set(m.model_types) & set(ck.model_types):
        return False
    if m.architectures and ck.architecture not in m.architectures:
        return False
    if m.name and not re.search(m.name, ck.name, re.IGNORECASE):
        return False
    return all(marker in ck.template for marker in m.template_has)


def _decide(kind: str, rule: Family, choice: ParserChoice, ck: Checkpoint, registry: Registry) -> ParserDecision:
    label = "reasoning parser" if kind == "reasoning" else "tool-call parser"
    src = f"family {rule.name!r} ({'; '.join(rule.sources)})"
    if not choice.parsers:
        return ParserDecision(kind, None, f"no {label}: {src}")
    if choice.when_template_has and not any(m in ck.template for m in choice.when_template_has):
        what = " or ".join(repr(m) for m in choice.when_template_has)
        why = "the checkpoint has no chat template" if not ck.template else f"its chat template has no {what}"
        return ParserDecision(kind, None, f"no {label}: {why}, so the model does not emit what {choice.parsers[0]} reads ({src})")
    if choice.unless_name and re.search(choice.unless_name, ck.name, re.IGNORECASE):
        return ParserDecision(
            kind, None, f"no {label}: the name {ck.name!r} matches {choice.unless_name!r}, a variant without it ({src})"
        )
    note = f"; {choice.note}" if choice.note else ""
    for i, name in enumerate(choice.parsers):
        if registry.has(kind, name):
            passed = f" ({', '.join(choice.parsers[:i])} not registered)" if i else ""
            return ParserDecision(kind, name, f"{src}; registered in vLLM {registry.vllm}{passed} ({registry.source}){note}")
    names = ", ".join(choice.parsers)
    return ParserDecision(
        kind,
        None,
        f"left out: vLLM {registry.vllm} registers no {names} ({registry.source}); {src}",
        warning=f"the {label} for this model ({names}, {src}) is not registered in vLLM {registry.vllm}: "
        "left out; a release or plugin that has it can be named with -- "
        f"--{'reasoning-parser' if kind == 'reasoning' else 'tool-call-parser'} NAME",
    )


def decide(families: tuple[Family, ...], ck: Checkpoint, registry: Registry) -> FamilyDecision:
    """The family, its hazards, and each parser with its reason."""
    matched = [rule for rule in families if matches(rule.match, ck)]
    first = matched[0] if matched else None
    out: dict[str, ParserDecision] = {}
    for kind in KINDS:
        rule = next((r for r in matched if getattr(r, kind) is not None), None)
        if rule is None:
            what = "reasoning parser" if kind == "reasoning" else "tool-call parser"
            out[kind] = ParserDecision(
                kind,
                None,
                f"no {what}: no rule of servectl's family table matches "
                f"(model_type {', '.join(ck.model_types) or '?'}, chat-template markers)",
            )
            continue
        out[kind] = _decide(kind, rule, getattr(rule, kind), ck, registry)
    return FamilyDecision(
        family=first.name if first else None,
        sources=list(first.sources) if first else [],
        hazards=list(first.hazards) if first else [],
        reasoning=out["reasoning"],
        tool_call=out["tool_call"],
    )
