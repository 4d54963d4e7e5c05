"""`docker run ...`: the container command, ordered as vLLM's docs and the model cards write it."""

from __future__ import annotations

import shlex

from servectl.render.container import container_run, docker_argv
from servectl.spec.models import LaunchSpec


def render(spec: LaunchSpec) -> str:
    return shlex.join(docker_argv(container_run(spec))) + "\n"
