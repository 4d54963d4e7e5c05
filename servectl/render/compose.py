"""docker-compose.yaml: the `docker run` launch as a Compose service (Compose specification).

Same container as servectl.render.docker (servectl.render.container decides it): GPU access from the profile (NVIDIA device reservation,
ROCm device nodes + video group), host IPC for vLLM's shared-memory tensors, the cache mount kept
between runs, the port published on the bind address only, secrets passed by name.
"""

from __future__ import annotations

from typing import Any

import yaml

from servectl.render.container import compose_service, container_run
from servectl.spec.models import LaunchSpec

FILENAME = "docker-compose.yaml"
SERVICE = "vllm"
# Loading 20-40 GB of weights plus torch.compile and CUDA graph capture takes minutes on a cold cache;
# failed probes inside start_period do not count towards `retries`.
START_PERIOD = "30m"


def healthcheck(spec: LaunchSpec) -> dict[str, Any]:
    """Probe /health with the image's own python3 (vLLM images ship python, not always curl)."""
    url = f"http://127.0.0.1:{spec.container_port}/health"
    probe = f"import urllib.request; urllib.request.urlopen('{url}', timeout=5)"
    return {
        "test": ["CMD", "python3", "-c", probe],
        "interval": "30s",
        "timeout": "10s",
        "retries": 3,
        "start_period": START_PERIOD,
    }


def literal(value: Any) -> Any:
    """Every string with `$` doubled: Compose interpolates ${VAR} / $VAR in all values and reads `$$`
    as one `$` (compose-spec, "Interpolation"), so a `$` in any service's argument arrives as written."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [literal(v) for v in value]
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    return value


def compose_dict(spec: LaunchSpec) -> dict[str, Any]:
    service = compose_service(container_run(spec))
    service["healthcheck"] = healthcheck(spec)
    service["restart"] = "unless-stopped"
    return {"name": spec.name.lower().replace(".", "-"), "services": {SERVICE: service}}


class _Dumper(yaml.SafeDumper):
    """safe_dump, with multi-line strings (inline `configs` files) as literal blocks people can read."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(doc: dict[str, Any], header: str) -> str:
    """The Compose file: every value taken literally (one escaping for all services), after a comment header."""
    return header + yaml.dump(literal(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


def render(spec: LaunchSpec) -> str:
    return dump(compose_dict(spec), f"# {spec.recipe} on {spec.profile}: docker compose up -d\n")
