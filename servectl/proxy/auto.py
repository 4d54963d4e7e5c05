"""`--presets auto`: the preset a request to the real model name asks for with its own fields.

Clients that cannot pick a virtual model name (`<served>-<preset>`) still say how they want to be
answered:

- thinking: `chat_template_kwargs.enable_thinking` (true/false), else `reasoning_effort`
  ("none" is off, any other effort is on: the rule vLLM applies itself when it renders the chat
  template, vllm/entrypoints/openai/chat_completion/protocol.py, build_chat_params, 0.32.0);
- task: `metadata.task`, a hint this proxy defines ("coding", "reasoning" or "general"); the
  proxy takes it out before forwarding (vLLM does not know the field and would log it as ignored).

| task \\ thinking   | on               | off                | not said         |
|-------------------|------------------|--------------------|------------------|
| coding            | thinking-coding  | instruct-general   | thinking-coding  |
| reasoning         | thinking-general | instruct-reasoning | thinking-general |
| general, other, - | thinking-general | instruct-general   | no preset        |

The names are Qwen3.5's published presets (profiles/presets.yaml, family qwen3.5; a user preset
of the same name replaces one). A request that says nothing keeps the model's own defaults; a
request naming a virtual model gets that preset, as without auto.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servectl.errors import UserError

AUTO = "auto"
TASKS = ("coding", "reasoning", "general")
# (task, thinking) -> preset; thinking None: the request does not say
RULES: dict[tuple[str | None, bool | None], str] = {
    ("coding", True): "thinking-coding",
    ("coding", False): "instruct-general",
    ("coding", None): "thinking-coding",
    ("reasoning", True): "thinking-general",
    ("reasoning", False): "instruct-reasoning",
    ("reasoning", None): "thinking-general",
    ("general", True): "thinking-general",
    ("general", False): "instruct-general",
    (None, True): "thinking-general",
    (None, False): "instruct-general",
}
NEEDED = frozenset(RULES.values())


def split_auto(names: str | None) -> tuple[str | None, bool]:
    """`--presets` -> (the preset/family names without `auto`, whether `auto` was among them)."""
    if not names:
        return names, False
    items = [n.strip() for n in names.split(",")]
    rest = ",".join(n for n in items if n and n != AUTO)
    return rest or None, AUTO in items


def check_auto(presets: Mapping[str, Any]) -> None:
    """UserError unless the presets the auto rules name are all served."""
    if missing := sorted(NEEDED - set(presets)):
        raise UserError(
            f"--presets {AUTO} needs the presets {', '.join(missing)}",
            f"add them or the family qwen3.5 to --presets, or give `--presets {AUTO}` alone",
        )


def thinking_of(body: Mapping[str, Any]) -> bool | None:
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and isinstance(kwargs.get("enable_thinking"), bool):
        return kwargs["enable_thinking"]
    effort = body.get("reasoning_effort")
    if isinstance(effort, str):
        return effort != "none"
    return None


def take_task(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(the body without the proxy's `metadata.task` hint, the hint); the input is not changed."""
    meta = body.get("metadata")
    if not isinstance(meta, dict) or "task" not in meta:
        return body, None
    out = {k: v for k, v in body.items() if k != "metadata"}
    if rest := {k: v for k, v in meta.items() if k != "task"}:
        out["metadata"] = rest
    task = meta["task"]
    return out, task if isinstance(task, str) else None


def choose(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(the body to forward, the preset's name or None) for a request naming the real model (pure)."""
    body, task = take_task(body)
    return body, RULES.get((task if task in TASKS else None, thinking_of(body)))
