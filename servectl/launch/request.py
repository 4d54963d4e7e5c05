"""What `servectl up` (and `demo`) asks the launch layer for: built once from the command line, handed over whole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from servectl.errors import UserError

Runtime = Literal["local", "docker", "ray"]


@dataclass(frozen=True)
class LaunchRequest:
    """One launch: the model, where and how it runs, and what `up` does once it is ready. Option meanings are
    servectl.cli.options' (the same on plan and render)."""

    model: str  # a recipe, a hub repo id or a checkpoint directory
    gpu: str | None = None  # GPU profile; None: detected (with its preset), cpu for a cpu-only recipe
    preset: str | None = None  # utilization preset; None: the detected one, else the profile's default
    runtime: Runtime = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    python: str | None = None  # the vLLM environment's interpreter (local and ray)
    model_path: str | None = None  # a local checkpoint directory in place of the recipe's repo
    name: str | None = None  # deployment name; None: the recipe's
    image: str | None = None  # container image (docker)
    vllm_args: tuple[str, ...] = ()  # the user's vLLM flags (after `--`)
    timeout_s: float = 900.0  # start-up deadline
    apply_patches: bool = False  # apply the known-bug patches the launch needs instead of refusing
    detach: bool = False  # leave the server running once ready
    strict: bool = False  # refuse vLLM flags that cannot be checked
    force: bool = False  # past the guards that can be overridden (and, docker, an image with bugs unpatched)
    speculative: str | None = None  # mtp, mtp:N or off
    nodes: int | None = None  # ray: the multi-node layout's node count (2 or more)
    head: str | None = None  # ray: the cluster's head address
    health_check: bool = True  # run the API checks after start-up (up)
    with_proxy: bool = False  # serve the sampling presets beside the server (up, foreground)
    proxy_port: int | None = None

    def check(self) -> None:
        """Combinations refused before anything runs (exit 2)."""
        if self.runtime == "ray":
            if not self.head or self.nodes is None or self.nodes < 2:
                raise UserError(
                    "--runtime ray needs --nodes N (2 or more) and --head ADDRESS",
                    "e.g. --runtime ray --nodes 2 --head 10.0.0.1:6379 (the Ray cluster's head, `ray start --head`)",
                )
        elif self.nodes not in (None, 1) or self.head is not None:  # --nodes 1: one machine, what local and docker run
            raise UserError("--nodes 2 or more and --head go with --runtime ray", "add --runtime ray, or drop them")
        if self.with_proxy and self.detach:
            raise UserError(
                "--with-proxy runs in the foreground with the server",
                "drop --detach, or run `servectl proxy --backend URL` next to the detached server",
            )
