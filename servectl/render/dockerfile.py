"""Dockerfile: the profile's vLLM image with servectl's known patches applied at build time.

The apply/verify program (patches/image_apply.py, stdlib only) and the patch data are embedded
in `RUN python3 -c` steps (zlib + base64, so no quoting of Python source in shell), so the
build needs nothing but the image's own python3 and no COPY of files next to the Dockerfile.
The verification RUN fails the build when a fix did not take. The image's entrypoint is kept
(`vllm serve` in vllm/vllm-openai); CMD carries the model and the rendered vLLM arguments.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import asdict
from importlib import resources

from servectl.catalog.patch_schema import PatchSpec
from servectl.render.container import DEFAULT_IMAGE
from servectl.spec.models import LaunchSpec


def _program(patches: list[PatchSpec], mode: str) -> str:
    source = resources.files("servectl.patches_data").joinpath("image_apply.py").read_text(encoding="utf-8")
    keep = ("id", "package", "distributions", "versions", "files", "verify")
    data = [{k: v for k, v in asdict(p).items() if k in keep} for p in patches]
    return f"{source}\nmain(__import__('json').loads({json.dumps(data)!r}), {mode!r})\n"


def python_step(patches: list[PatchSpec], mode: str) -> str:
    """`python3 -c "..."` that runs image_apply.main(PATCHES, mode)."""
    blob = base64.b64encode(zlib.compress(_program(patches, mode).encode(), 9)).decode()
    return f"python3 -c \"import base64,zlib;exec(zlib.decompress(base64.b64decode('{blob}')))\""


def render(spec: LaunchSpec, patch_list: list[PatchSpec]) -> str:
    lines = [
        f"# vLLM image for {spec.recipe} on {spec.profile}, with servectl's known patches applied at build time.",
        "# Rendered by `servectl render --format dockerfile`; the RUN steps use only the image's python3.",
    ]
    for p in patch_list:
        lines.append(f"# patch {p.id} ({p.package} {p.versions}): {p.title}")
        lines += [f"#   {url}" for url in p.upstream]
    lines += [
        f"FROM {spec.image or DEFAULT_IMAGE}",
        f'LABEL org.opencontainers.image.description="{spec.recipe} on {spec.profile}, patched by servectl" '
        f'io.servectl.patches="{",".join(p.id for p in patch_list)}"',
    ]
    if spec.env:
        lines.append("ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(spec.env.items())))
    lines += [
        "# 1. apply: the fix text present -> nothing to do; the bug text exactly once -> replace; else fail",
        "# 2. verify: each patch's own check in the image's interpreter; a fix that did not take fails the build",
        f"RUN {python_step(patch_list, 'apply')} \\\n && {python_step(patch_list, 'verify')}",
        f"EXPOSE {spec.container_port}",
        "CMD " + json.dumps([spec.model, *spec.vllm_args]),
    ]
    return "\n".join(lines) + "\n"
