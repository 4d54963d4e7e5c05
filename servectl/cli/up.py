"""`servectl up MODEL`: plan, patch-check, start vLLM, follow its start-up, health-check it."""

from __future__ import annotations

import click

from servectl.cli.options import PORT, SECONDS
from servectl.launch import workflow


@click.command()
@click.argument("model")
@click.option("--gpu", help="GPU profile (default: detected; tiny-cpu runs on cpu).")
@click.option("--runtime", type=click.Choice(["local", "docker", "ray"]), default="local", show_default=True,
              help="Run vLLM from its venv, in a container, or from its venv as the driver of an existing Ray cluster (--nodes, --head).")
@click.option("--port", type=PORT, default=8000, show_default=True, help="Port the server listens on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server binds.")
@click.option("--python", "python", help="Interpreter of the vLLM environment: runs the server, generates the tiny model, checks the vLLM flags (default: $SERVECTL_VLLM_PYTHON, else the bootstrapped environment that fits the recipe and GPU).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False), help="Serve this local checkpoint directory instead of the recipe's model.")
@click.option("--detach", is_flag=True, help="Leave the server running and return once it is healthy.")
@click.option("--apply-patches", "patch", is_flag=True, help="Apply known vLLM fixes to the environment before starting.")
@click.option("--timeout", type=SECONDS, default=900, show_default=True, help="Seconds the start-up may take.")
@click.option("--name", help="Deployment name (default: the model's).")
@click.option("--no-check", is_flag=True, help="Skip the API health checks after start-up (/health is still required).")
@click.option("--json", "as_json", is_flag=True, help="Print the launch summary as JSON on stdout.")
@click.option("--proxy", "with_proxy", is_flag=True, help="Also serve the sampling presets as virtual model names (servectl proxy).")
@click.option("--proxy-port", type=PORT, help="Port of the preset proxy (default: the server's port + 1).")
@click.option("--strict", is_flag=True, help="Refuse vLLM flags that cannot be checked against the vLLM that runs them.")
@click.option("--speculative", metavar="mtp[:N]|off", help="MTP speculative decoding: the recipe's depth for the GPU, N draft tokens, or off.")
@click.option("--nodes", type=click.IntRange(2, 64), help="--runtime ray: Ray nodes of the layout (pipeline parallel N, tensor parallel = the profile's GPUs).")
@click.option("--head", metavar="ADDRESS", help="--runtime ray: the Ray cluster's head (HOST:PORT of `ray start --head`).")
@click.option("--image", help="Container image for --runtime docker (default: the profile's).")
@click.option("--force", is_flag=True, help="Launch past the guards `render --force` overrides (known vLLM bugs included); "
              "--runtime docker: also start an image whose vLLM release has known bugs unpatched.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def up(model, gpu, runtime, port, host, python, model_path, detach, patch, timeout, name, no_check, as_json, with_proxy, proxy_port,
       strict, extra, speculative=None, nodes=None, head=None, image=None, force=False) -> None:
    """Start MODEL on vLLM and wait until it answers. Extra vLLM flags go after `--`."""
    workflow.up(model, gpu=gpu, runtime=runtime, port=port, host=host, python=python, model_path=model_path, detach=detach,
                patch=patch, timeout=timeout, name=name, no_check=no_check, as_json=as_json, with_proxy=with_proxy,
                proxy_port=proxy_port, extra=list(extra), strict=strict, speculative=speculative, nodes=nodes, head=head,
                image=image, force=force)
