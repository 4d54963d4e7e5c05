"""A resolved deployment: everything a renderer or runner needs."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from servectl.catalog.base import Vendor
from servectl.catalog.gpu import ContainerOptions, GpuProfile
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError


@dataclass(frozen=True, kw_only=True)
class LaunchOptions:
    """Where and how a deployment runs (not vLLM flags)."""

    name: str | None = None  # Deployment / container name (default: derived from the model).
    host: str = "127.0.0.1"  # Address the server binds (or the host port is published on).
    port: int = 8000  # Port on the host.
    image: str | None = None  # Container image (default: the profile's).
    cache_dir: str = "/srv/cache"  # Host directory mounted as the container's /root/.cache (HF cache and torch.compile artefacts; keep it between runs).
    model_path: str | None = None  # Local checkpoint directory to serve instead of the repo id.
    secrets: list[str] = field(
        default_factory=lambda: ["HF_TOKEN"]
    )  # Environment variables passed by name only (never their values).
    api_key_env: str | None = None  # Environment variable holding the API key vLLM should require (passed by name).
    ray_dashboard_host: str = "127.0.0.1"  # Address Ray's dashboard (an unauthenticated job API) binds on a multi-node head.

    # These values end up in file, unit and container names, shell scripts, YAML and URLs: each is
    # held to a shape all of those accept as one plain word. Checked here, not by a schema library:
    # options come from servectl's own commands, and a refusal names the option the user typed.
    def __post_init__(self) -> None:
        if self.name is not None and not NAME_PATTERN.match(self.name):
            raise UserError(f"--name {self.name!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if not _is_ip(self.host) and not _HOSTNAME.match(self.host):
            raise UserError(f"--host {self.host!r} is neither an IP address nor a host name")
        if not 1 <= self.port <= 65535:
            raise UserError(f"--port {self.port} is not a TCP port (1-65535)")
        if not _is_ip(self.ray_dashboard_host):
            raise UserError(f"--ray-dashboard-host {self.ray_dashboard_host!r} is not an IP address")
        if self.image is not None and not _IMAGE.match(self.image):
            raise UserError(f"--image {self.image!r} is not an image reference such as vllm/vllm-openai:v0.20.2")
        for secret in self.secrets:
            if not ENV_NAME.match(secret):
                raise UserError(f"--secret {secret!r} is not an environment variable name (letters, digits, '_')")
        if self.api_key_env is not None and not ENV_NAME.match(self.api_key_env):
            raise UserError(f"{self.api_key_env!r} is not an environment variable name (letters, digits, '_')")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# docker/distribution's reference grammar, simplified: [registry[:port]/]path[:tag][@sha256:digest]
_IMAGE = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)


@dataclass(frozen=True, kw_only=True)
class LaunchSpec:
    """Everything a renderer needs: resolved, guarded, ready to print. Built by servectl.spec.resolve."""

    name: str  # Deployment / container / unit name.
    recipe: str  # Model recipe name.
    profile: str  # GPU profile name.
    model_recipe: ModelRecipe = field(
        compare=False, repr=False
    )  # The resolved recipe (renderers read it; never reload the catalog).
    gpu_profile: GpuProfile = field(compare=False, repr=False)  # The resolved GPU profile.
    card: bool = False  # Rendered from the model card's settings verbatim.
    model: str  # Model argument of vllm serve (repo id or path).
    served_model_name: str | None = None  # --served-model-name, when set in args.
    vllm_args: list[str]  # vLLM arguments after the model, one token per item.
    env: dict[str, str] = field(default_factory=dict)  # Non-secret environment values.
    secret_env: list[str] = field(default_factory=list)  # Secrets passed by name.
    image: str | None = None  # Container image.
    host: str = "127.0.0.1"  # Bind / publish address.
    port: int = 8000  # Host port.
    container_port: int = 8000  # Port vLLM listens on inside a container.
    cache_host_path: str  # Host side of the cache mount.
    cache_container_path: str = "/root/.cache"  # Container side of the cache mount.
    container: ContainerOptions | None = None  # Accelerator access for containers.
    vendor: Vendor  # Accelerator vendor.
    gpu_count: int = 1  # Devices used (tensor x pipeline parallel within one node).
    remove: bool = True  # Remove the container on exit (docker --rm).
    argv_binds: bool = True  # The `vllm serve` argv carries --host/--port (false only for a card's verbatim serve command).
    ray_dashboard_host: str = (
        "127.0.0.1"  # Address Ray's dashboard binds on a multi-node head (unauthenticated job API: local unless asked).
    )
    warnings: list[str] = field(default_factory=list)  # Things the user should know about this launch.
    notes: list[str] = field(default_factory=list)  # Choices servectl made for this launch, and why (not problems).
    avoided_bugs: tuple[str, ...] = ()  # Known bugs servectl's settings step around with their catalog workaround.


def ports_distinct(*named: tuple[str, int]) -> None:
    """Ports of one deployment (server, proxy) must be distinct TCP ports: UserError naming the options."""
    for option, port in named:
        if not 1 <= port <= 65535:
            raise UserError(f"{option} {port} is not a TCP port (1-65535)", "pick a port from 1 to 65535")
    seen: dict[int, str] = {}
    for option, port in named:
        if port in seen:
            raise UserError(f"{seen[port]} and {option} are both {port}", "give them different ports")
        seen[port] = option


def proxy_port_for(port: int, proxy_port: int | None) -> int:
    """The proxy's port (default: the server's + 1), a TCP port distinct from the server's."""
    chosen = proxy_port if proxy_port is not None else port + 1
    if proxy_port is None and chosen > 65535:
        raise UserError(f"--port {port} leaves no port above it for the proxy", "pass --proxy-port N")
    ports_distinct(("--port", port), ("--proxy-port", chosen))
    return chosen
