"""Renderers: pure functions LaunchSpec (and optionally a Plan) -> text in one target format.

FORMATS maps a --format name to its module's `render(spec) -> str`; each module owns one format.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from servectl.errors import UserError
from servectl.specs import LaunchSpec

# format name -> module under servectl.render (imported lazily: each pulls only what it needs)
FORMATS: dict[str, str] = {
    "argv": "argv",
    "docker": "docker",
    "vllm-config": "vllm_config",
    "compose": "compose",
    "systemd": "systemd",
    "k8s": "k8s",
    "k8s-lws": "multinode:render_lws",
    "k8s-raycluster": "multinode:render_raycluster",
    "ray-nodes": "multinode:render_ray_nodes",
    "dockerfile": "dockerfile",
}


def renderer(fmt: str) -> Callable[[LaunchSpec], str]:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}", f"formats: {', '.join(FORMATS)}")
    # "module" or "module:function" (one module may serve several formats)
    module, _, func = FORMATS[fmt].partition(":")
    return getattr(importlib.import_module(f"servectl.render.{module}"), func or "render")
