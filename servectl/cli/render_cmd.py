"""`servectl render MODEL --gpu P --format F [--card] [-o DIR]`."""

from __future__ import annotations

from pathlib import Path

import click

from servectl.catalog import load_catalog
from servectl.cli.app import info, main, warn
from servectl.deployment import Request, resolve
from servectl.fsutil import write_atomic
from servectl.render import FORMATS, renderer
from servectl.specs import LaunchOptions


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("model")
@click.option("--gpu", "gpu", required=True, help="GPU profile (servectl profiles list).")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="argv", show_default=True, help="Output format.")
@click.option("--card", is_flag=True, help="Render the model card's published settings verbatim.")
@click.option("--preset", help="Utilization preset of the profile (desktop, headless, ...).")
@click.option("--port", type=int, default=8000, show_default=True, help="Host port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind / publish address.")
@click.option("--name", help="Deployment / container name.")
@click.option("--image", help="Container image (default: the profile's).")
@click.option("--secret", "secrets", multiple=True, help="Environment variable passed by name (repeatable; HF_TOKEN always).")
@click.option("--force", is_flag=True, help="Override guards that can be overridden.")
@click.option("--nodes", type=click.IntRange(1, 64), help="Nodes for a multi-node Ray layout (k8s-lws, k8s-raycluster, ray-nodes; default 2 there).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write into this directory instead of stdout.")
@click.argument("vllm_args", nargs=-1, type=click.UNPROCESSED)
def render(model, gpu, fmt, card, preset, port, host, name, image, secrets, force, out_dir, vllm_args, nodes=None) -> None:
    """Render a launch for MODEL on GPU profile P. Extra vLLM flags after the options override servectl's."""
    cat = load_catalog()
    opts = LaunchOptions(name=name, host=host, port=port, image=image, secrets=["HF_TOKEN", *secrets])
    spec = resolve(Request(cat.model(model), cat.gpu(gpu), list(vllm_args), options=opts, card=card, preset=preset, force=force))
    for w in spec.warnings:
        warn(w)
    from servectl.render.multinode import render_with_nodes

    text = render_with_nodes(fmt, spec, nodes)  # plain renderer(fmt)(spec) unless multi-node
    if out_dir is None:
        click.echo(text, nl=False)
        return
    target = out_dir / f"{spec.name}.{fmt}"
    write_atomic(target, text)
    info(f"wrote {target}")
