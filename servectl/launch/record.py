"""Deployment records kept in the user state dir, and the steps of one through a launch (claimed, started,
ready, released)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DeploymentRecord(BaseModel):
    """One started deployment, as kept in the user state dir (no secret values, ever)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Deployment name (unique among live deployments).")
    runtime: Literal["local", "docker"] = Field(description="Which runner started it.")
    recipe: str = Field(description="Model recipe name.")
    profile: str = Field(description="GPU profile name.")
    model: str = Field(description="Model argument given to vllm serve (repo id or path).")
    served_model_name: str | None = Field(None, description="Name clients use in requests.")
    host: str = Field(description="Address the server binds.")
    port: int = Field(ge=1, le=65535, description="Port the server listens on.")
    pid: int | None = Field(None, description="Process (and process group) id of the local server.")
    create_time: float | None = Field(None, description="psutil create_time of pid: tells a reused PID apart.")
    marker: str | None = Field(
        None,
        description="NAME:RANDOM, put into the server's environment as SERVECTL_DEPLOYMENT_ID "
        "(a container's label): servectl signals only processes that carry it.",
    )
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
    fleet: str | None = Field(
        None, description="`servectl serve`: the fleet this server belongs to and its front door (NAME URL)."
    )

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"


def new_record(
    spec, *, recipe: str, profile: str, runtime: str, log_path: str, detached: bool, ray_head: str | None = None
) -> DeploymentRecord:
    """The record a launch claims before anything starts: owned by this servectl, with the deployment's new marker."""
    import time

    import psutil

    from servectl.launch import ownership

    me = psutil.Process()
    return DeploymentRecord(
        name=spec.name,
        runtime="docker" if runtime == "docker" else "local",
        recipe=recipe,
        profile=profile,
        model=spec.model,
        served_model_name=spec.served_model_name,
        host=spec.host,
        port=spec.port,
        log_path=log_path,
        argv=[],
        started_at=time.time(),
        detached=detached,
        owner_pid=me.pid,
        owner_create_time=me.create_time(),
        ray_head=ray_head,
        marker=ownership.new_marker(spec.name),
    )


def started(record: DeploymentRecord, launched, predicted_kv_tokens: int | None) -> DeploymentRecord:
    """What the runner started: its process or container and the command line (secret values masked)."""
    from servectl.redact import redact_argv

    return record.model_copy(
        update={
            "runtime": launched.runtime,
            "pid": launched.pid,
            "create_time": launched.create_time,
            "container_id": launched.container_id,
            "argv": redact_argv(launched.argv),
            "kv_cache_tokens_predicted": predicted_kv_tokens,
        }
    )


def ready(record: DeploymentRecord, kv_cache_tokens: int | None) -> DeploymentRecord:
    return record.model_copy(update={"ready": True, "kv_cache_tokens_reported": kv_cache_tokens})


def released(record: DeploymentRecord) -> DeploymentRecord:
    """A detached deployment: no servectl owns it any more (`servectl down` stops it)."""
    return record.model_copy(update={"owner_pid": None, "owner_create_time": None})
