"""Deployment records kept in the user state dir."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DeploymentRecord(BaseModel):
    """One started deployment, as kept in the user state dir (no secret values, ever)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Deployment name (unique among live deployments).")
    runtime: Literal["local", "docker", "dry-run"] = Field(description="Which runner started it.")
    recipe: str = Field(description="Model recipe name.")
    profile: str = Field(description="GPU profile name.")
    model: str = Field(description="Model argument given to vllm serve (repo id or path).")
    served_model_name: str | None = Field(None, description="Name clients use in requests.")
    host: str = Field(description="Address the server binds.")
    port: int = Field(ge=1, le=65535, description="Port the server listens on.")
    pid: int | None = Field(None, description="Process (and process group) id of the local server.")
    create_time: float | None = Field(None, description="psutil create_time of pid: tells a reused PID apart.")
    marker: str | None = Field(None, description="NAME:RANDOM, put into the server's environment as SERVECTL_DEPLOYMENT_ID "
                                                 "(a container's label): servectl signals only processes that carry it.")
    container_id: str | None = Field(None, description="Docker container id.")
    log_path: str = Field(description="File the server's output goes to.")
    argv: list[str] = Field(description="The command that was started.")
    started_at: float = Field(description="Unix time of the start.")
    detached: bool = Field(False, description="Left running after `servectl up` returned.")
    owner_pid: int | None = Field(None, description="PID of the `servectl up` that owns it (None once detached).")
    owner_create_time: float | None = Field(None, description="psutil create_time of owner_pid.")
    ready: bool = Field(False, description="The server answered /health after start-up.")
    kv_cache_tokens_reported: int | None = Field(None, description="KV cache size vLLM logged at start-up, tokens.")
    kv_cache_tokens_predicted: int | None = Field(None, description="KV cache size the plan predicted, tokens.")
    ray_head: str | None = Field(None, description="`up --runtime ray`: the Ray cluster's head the local vLLM drives.")
    fleet: str | None = Field(None, description="`servectl serve`: the fleet this server belongs to and its front door (NAME URL).")

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"
