"""`servectl proxy`: sampling presets as virtual model names in front of a running vLLM server."""

from __future__ import annotations

import click

from servectl.cli import options

from servectl.catalog.presets import select_presets, virtual_names
from servectl.cli.app import info
from servectl.errors import UserError
from servectl.proxy.auto import check_auto, split_auto
from servectl.proxy.policy import POLICIES


@click.command()
@click.option("--backend", required=True, help="URL of the vLLM server, e.g. http://127.0.0.1:8000.")
@options.LISTEN(default="127.0.0.1:8001", show_default=True)
@click.option(
    "--presets",
    "names",
    help="Comma-separated preset or family names (default: all); `auto` also picks a preset "
    "for requests to the real model name from their enable_thinking / reasoning_effort / metadata.task.",
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default="preset-wins",
    show_default=True,
    help="Which value counts when the client also sets a sampling field the preset sets.",
)
@click.option("--model", "served", help="Served model name of the backend (default: discovered from its /v1/models).")
@options.API_KEY_ENV("Here: the backend's key, used only to discover its model (clients send their own).")
@click.option(
    "--max-body-mib",
    type=click.IntRange(1, 4096),
    default=32,
    show_default=True,
    help="Largest request body accepted; a larger one is answered 413 in OpenAI's error shape.",
)
def proxy(backend, listen, names, policy, served, api_key_env, max_body_mib=32) -> None:
    """Serve sampling presets as virtual model names (<served>-<preset>) in front of BACKEND."""
    # here, not at the top: `presets list` shares this module and needs none of the server's libraries
    from servectl.proxy.app import discover_served_model, normalize_backend, refuse_self, serve_proxy

    backend = normalize_backend(backend)
    host, port = listen
    refuse_self(backend, host, port)
    names, auto = split_auto(names)
    chosen = select_presets(names)
    if not chosen:
        raise UserError("no sampling presets to serve", "check --presets and the config file's `presets:`")
    if auto:
        check_auto(chosen)
    from servectl.verify.health import api_key_from

    key = api_key_from(api_key_env)  # registered as a secret, refused unless one printable word
    served = served or discover_served_model(backend, key)

    def bound(port: int) -> None:
        info(f"proxy http://{host}:{port} -> {backend} (model {served}, policy {policy})")
        for name in virtual_names(served, chosen):
            info(f"  {name}")
        if auto:
            info(f"  {served}: preset from enable_thinking / reasoning_effort / metadata.task (auto)")

    serve_proxy(backend, host, port, served, chosen, policy, auto, max_body=max_body_mib * 2**20, on_bound=bound)
