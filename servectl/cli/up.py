"""`servectl up MODEL`: plan, patch-check, start vLLM, follow its start-up, health-check it."""

from __future__ import annotations

import click

from servectl.cli import options
from servectl.cli.progress import LaunchPrinter
from servectl.launch import up as launch_up
from servectl.launch.request import LaunchRequest


@click.command()
@click.argument("model")
@options.GPU(f"{options.DETECTED} A recipe that runs only on cpu (tiny-cpu): cpu.")
@options.PRESET()
@click.option(
    "--runtime",
    type=click.Choice(["local", "docker", "ray"]),
    default="local",
    show_default=True,
    help="Run vLLM from its environment, in a container, or from its environment as the driver of an existing "
    "Ray cluster (--nodes, --head).",
)
@options.PORT()
@options.HOST()
@options.PYTHON(
    "It runs the server, makes the tiny model and checks the vLLM flags (not with --runtime docker). "
    "Default: $SERVECTL_VLLM_PYTHON, else the bootstrapped environment that fits the recipe and GPU."
)
@options.MODEL_PATH("It must exist here.", type=click.Path(file_okay=False, exists=True))
@options.NAME()
@options.IMAGE("For --runtime docker.")
@click.option("--detach", is_flag=True, help="Leave the server running and return once it is healthy (`servectl down` stops it).")
@click.option(
    "--apply-patches",
    "apply_patches",
    is_flag=True,
    help="Apply the known vLLM fixes this launch needs to the environment before starting (else a missing one "
    "refuses the launch).",
)
@options.TIMEOUT("The start-up may take this long; then vLLM is stopped.", default=900)
@click.option("--no-check", is_flag=True, help="Skip the API health checks after start-up (/health is still required).")
@options.JSON("Here: the launch summary and its health report.")
@options.WITH_PROXY("Here: in the foreground beside the server (not with --detach).", aliases=("--proxy",))
@options.PROXY_PORT()
@options.STRICT()
@options.SPECULATIVE()
@options.NODES("Here: 2 or more with --runtime ray and --head.")
@click.option("--head", metavar="ADDRESS", help="--runtime ray: the Ray cluster's head (HOST:PORT of `ray start --head`).")
@options.FORCE(f"{options.GUARDS} With --runtime docker, also an image whose vLLM release has known bugs unpatched.")
@options.vllm_flags()
def up(
    model,
    gpu,
    preset,
    runtime,
    port,
    host,
    python,
    model_path,
    name,
    image,
    detach,
    apply_patches,
    timeout,
    no_check,
    as_json,
    with_proxy,
    proxy_port,
    strict,
    speculative,
    nodes,
    head,
    force,
    vllm_args,
) -> None:
    """Start MODEL on vLLM, follow its start-up and health-check it, then serve in the foreground until Ctrl-C (or
    return with --detach). MODEL is a recipe (curated or your own), a hub repo id (org/name[@revision]) or a
    checkpoint directory. vLLM flags go after `--`, as `vllm serve` takes them: they override servectl's settings
    and are checked against vLLM's options."""
    request = LaunchRequest(
        model,
        gpu=gpu,
        preset=preset,
        runtime=runtime,
        host=host,
        port=port,
        python=python,
        model_path=model_path,
        name=name,
        image=image,
        vllm_args=tuple(vllm_args),
        timeout_s=timeout,
        apply_patches=apply_patches,
        detach=detach,
        strict=strict,
        force=force,
        speculative=speculative,
        nodes=nodes,
        head=head,
        health_check=not no_check,
        with_proxy=with_proxy,
        proxy_port=proxy_port,
    )
    with LaunchPrinter(as_json) as printer:
        launch_up.up(request, printer)
