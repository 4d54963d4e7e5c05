"""A resolved deployment: everything a renderer or runner needs."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, InstanceOf, field_validator

from servectl.catalog.base import Strict, Vendor
from servectl.catalog.gpu import ContainerOptions, GpuProfile
from servectl.catalog.recipe import ModelRecipe


class LaunchOptions(Strict):
    """Where and how a deployment runs (not vLLM flags)."""

    name: str | None = Field(None, description="Deployment / container name (default: derived from the model).")
    host: str = Field("127.0.0.1", description="Address the server binds (or the host port is published on).")
    port: int = Field(8000, ge=1, le=65535, description="Port on the host.")
    image: str | None = Field(None, description="Container image (default: the profile's).")
    cache_dir: str = Field("/srv/cache", description="Host directory mounted as the container's /root/.cache (HF cache and torch.compile artefacts; keep it between runs).")
    model_path: str | None = Field(None, description="Local checkpoint directory to serve instead of the repo id.")
    secrets: list[str] = Field(default_factory=lambda: ["HF_TOKEN"], description="Environment variables passed by name only (never their values).")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key vLLM should require (passed by name).")
    ray_dashboard_host: str = Field("127.0.0.1", description="Address Ray's dashboard (an unauthenticated job API) binds on a multi-node head.")

    # These values end up in file, unit and container names, shell scripts, YAML and URLs: each is
    # held to a shape all of those accept as one plain word.
    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_PATTERN.match(v):
            raise ValueError(f"--name {v!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            if not _HOSTNAME.match(v):
                raise ValueError(f"--host {v!r} is neither an IP address nor a host name") from None
        return v

    @field_validator("ray_dashboard_host")
    @classmethod
    def _dashboard_host(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"--ray-dashboard-host {v!r} is not an IP address") from None
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not _IMAGE.match(v):
            raise ValueError(f"--image {v!r} is not an image reference such as vllm/vllm-openai:v0.20.2")
        return v

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: list[str]) -> list[str]:
        for name in v:
            if not ENV_NAME.match(name):
                raise ValueError(f"--secret {name!r} is not an environment variable name (letters, digits, '_')")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, v: str | None) -> str | None:
        if v is not None and not ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not an environment variable name (letters, digits, '_')")
        return v


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# docker/distribution's reference grammar, simplified: [registry[:port]/]path[:tag][@sha256:digest]
_IMAGE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
                    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")


class LaunchSpec(Strict):
    """Everything a renderer needs: resolved, guarded, ready to print. Built by servectl.spec.resolve."""

    name: str = Field(description="Deployment / container / unit name.")
    recipe: str = Field(description="Model recipe name.")
    profile: str = Field(description="GPU profile name.")
    model_recipe: InstanceOf[ModelRecipe] = Field(exclude=True, repr=False, description="The resolved recipe (renderers read it; never reload the catalog).")
    gpu_profile: InstanceOf[GpuProfile] = Field(exclude=True, repr=False, description="The resolved GPU profile.")
    card: bool = Field(False, description="Rendered from the model card's settings verbatim.")
    model: str = Field(description="Model argument of vllm serve (repo id or path).")
    served_model_name: str | None = Field(None, description="--served-model-name, when set in args.")
    vllm_args: list[str] = Field(description="vLLM arguments after the model, one token per item.")
    env: dict[str, str] = Field(default_factory=dict, description="Non-secret environment values.")
    secret_env: list[str] = Field(default_factory=list, description="Secrets passed by name.")
    image: str | None = Field(None, description="Container image.")
    host: str = Field("127.0.0.1", description="Bind / publish address.")
    port: int = Field(8000, description="Host port.")
    container_port: int = Field(8000, description="Port vLLM listens on inside a container.")
    cache_host_path: str = Field(description="Host side of the cache mount.")
    cache_container_path: str = Field("/root/.cache", description="Container side of the cache mount.")
    container: ContainerOptions | None = Field(None, description="Accelerator access for containers.")
    vendor: Vendor = Field(description="Accelerator vendor.")
    gpu_count: int = Field(1, ge=1, description="Devices used (tensor x pipeline parallel within one node).")
    remove: bool = Field(True, description="Remove the container on exit (docker --rm).")
    argv_binds: bool = Field(True, description="The `vllm serve` argv carries --host/--port (false only for a card's verbatim serve command).")
    ray_dashboard_host: str = Field("127.0.0.1", description="Address Ray's dashboard binds on a multi-node head (unauthenticated job API: local unless asked).")
    warnings: list[str] = Field(default_factory=list, description="Things the user should know about this launch.")
