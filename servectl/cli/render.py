"""`servectl render MODEL --gpu P --format F [--card] [-o DIR]` and `render --fleet FLEET.yaml`."""

from __future__ import annotations

from pathlib import Path

import click

from servectl.cli import options
from servectl.cli.app import echo, info, warn
from servectl.errors import CheckFailed, UserError
from servectl.fsutil import write_atomic
from servectl.redact import carries_secret
from servectl.render import FORMATS, outputs
from servectl.render.request import DEFAULT_CACHE_DIR, DEFAULT_PROXY_IMAGE, DEFAULT_SERVECTL_BIN, RenderRequest, rendering
from servectl.render.systemd import DEFAULT_VLLM_BIN


def refuse_secrets(rendered: str) -> None:
    """A rendering goes into files, units and manifests people share: one that would carry a secret value
    (a credential in a URL, an Authorization header, an API key's value) is refused, never written."""
    if carries_secret(rendered):
        raise UserError(
            "the rendering would carry a secret value (a credential, a key, a token)",
            "pass secrets by name: --secret NAME, and export NAME",
        )


@click.command()
@click.argument("model", required=False)
@options.GPU("Required with MODEL: the machine the rendering is for (render detects nothing).")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="argv", show_default=True, help="Output format.")
@click.option("--card", is_flag=True, help="Render the model card's published settings verbatim.")
@options.PRESET()
@options.PORT()
@options.HOST()
@options.NAME("With --card: the card's container name by default.")
@options.IMAGE()
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="VAR",
    help="Environment variable passed to the server by name (repeatable; HF_TOKEN always).",
)
@options.FORCE(options.GUARDS)
@options.NODES("The multi-node formats (k8s-lws, k8s-raycluster, ray-nodes) need 2 or more (default 2); the others, 1.")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write into this directory (launch.sh, docker-run.sh, vllm-config.yaml, docker-compose.yaml, NAME.service, "
    "...) instead of printing.",
)
@click.option(
    "--validate",
    is_flag=True,
    help="Check the result with the real tools: vLLM's own argument parser, docker compose, systemd-analyze, the "
    "Kubernetes and CRD schemas, promtool (--with-monitoring).",
)
@options.PYTHON(
    "The target's vLLM environment, when it is here: its own parser checks the vLLM flags after `--`, its "
    "release picks the known bugs, and --validate runs there. Default: none (--validate: "
    "$SERVECTL_VLLM_PYTHON, else the environment that fits the recipe and GPU, else any there is)."
)
@click.option(
    "--vllm-bin",
    help=f"Absolute path of `vllm` for --format systemd (default: the bootstrapped environment's that fits, else {DEFAULT_VLLM_BIN}).",
)
@options.MODEL_PATH(
    "It is the target machine's path (need not exist here), mounted read-only in containers; the tiny "
    "recipe's default: its generated directory."
)
@click.option(
    "--cache-dir",
    default=DEFAULT_CACHE_DIR,
    show_default=True,
    help="Host directory for the HF and compile caches (containers mount it at /root/.cache).",
)
@options.WITH_PROXY("Here: a Compose service (--format compose) or a second unit (--format systemd).")
@options.PROXY_PORT()
@click.option(
    "--proxy-image",
    default=DEFAULT_PROXY_IMAGE,
    show_default=True,
    help="Image of the proxy's Compose service (docker/Dockerfile.servectl; scripts/docker-servectl-image builds it).",
)
@click.option(
    "--with-monitoring",
    is_flag=True,
    help="Add monitoring: compose: Prometheus and Grafana with vLLM's dashboard; "
    "Kubernetes formats: a ServiceMonitor and the dashboard as a ConfigMap.",
)
@click.option(
    "--servectl-bin",
    default=DEFAULT_SERVECTL_BIN,
    show_default=True,
    help="Absolute path of `servectl` for the proxy's systemd unit.",
)
@click.option(
    "--ray-dashboard-host",
    default="127.0.0.1",
    show_default=True,
    help="Address Ray's dashboard binds on a multi-node head (an unauthenticated job API).",
)
@options.STRICT("Without --python: refuse those servectl's table of vLLM options lacks.")
@options.SPECULATIVE()
@click.option(
    "--fleet",
    "fleet_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Render a fleet file (servectl serve) instead of MODEL: --format compose or systemd.",
)
@click.option(
    "--fleet-layout",
    type=click.Choice(["front-door", "services"]),
    default="front-door",
    show_default=True,
    help="Compose of a fleet: the front door alone, or one vLLM service per model with its memory share.",
)
@options.vllm_flags()
def render(
    model,
    gpu,
    fmt,
    card,
    preset,
    port,
    host,
    name,
    image,
    secrets,
    force,
    nodes,
    out_dir,
    validate,
    python,
    vllm_bin,
    model_path,
    cache_dir,
    with_proxy,
    proxy_port,
    proxy_image,
    with_monitoring,
    servectl_bin,
    ray_dashboard_host,
    strict,
    speculative,
    fleet_file,
    fleet_layout,
    vllm_args,
) -> None:
    """Render a launch for MODEL on GPU profile P. MODEL is a recipe (curated or your own), a hub repo id
    (org/name[@revision]) or a checkpoint directory (servectl derives the recipe). vLLM flags go after `--`, as
    `vllm serve` takes them: they override servectl's settings and are checked against vLLM's options.

    \b
    servectl render qwen3.5-35b-a3b-nvfp4 --gpu rtx-5090 --card --format docker
    servectl render qwen3.5-35b-a3b-gptq-8bit --gpu rocm-4gpu --format compose -o deploy/
    servectl render qwen3.5-35b-a3b-mxfp4 --gpu rtx-5090 --format vllm-config --validate -- --max-model-len 16384
    servectl render --fleet fleet.yaml --format compose --fleet-layout services
    """
    python_path = Path(python) if python else None
    if fleet_file is not None:
        if model or vllm_args:
            raise UserError("--fleet renders the fleet file's models", "drop MODEL and the vLLM flags (set them in the file)")
        if with_proxy:
            raise UserError("--with-proxy does not apply to --fleet", "the front door serves the presets itself")
        return render_fleet(fleet_file, fmt, fleet_layout, image, servectl_bin, validate, python_path, out_dir, with_monitoring)
    if not model or not gpu:
        raise UserError("render needs MODEL and --gpu PROFILE (or --fleet FLEET.yaml)", "e.g. servectl render tiny-cpu --gpu cpu")
    done = rendering(
        RenderRequest(
            model,
            gpu,
            fmt,
            tuple(vllm_args),
            card=card,
            preset=preset,
            port=port,
            host=host,
            name=name,
            image=image,
            secrets=tuple(secrets),
            force=force,
            nodes=nodes,
            python=python,
            vllm_bin=vllm_bin,
            model_path=model_path,
            cache_dir=cache_dir,
            with_proxy=with_proxy,
            proxy_port=proxy_port,
            proxy_image=proxy_image,
            with_monitoring=with_monitoring,
            servectl_bin=servectl_bin,
            ray_dashboard_host=ray_dashboard_host,
            strict=strict,
            speculative=speculative,
        )
    )
    for w in done.warnings:
        warn(w)
    for note in done.notes:
        info(f"note: {note}")
    if validate:
        from servectl.verify import validate as checks

        tools, problems = checks.rendering(fmt, done.spec, done.text, python_path, with_monitoring)
        if problems:
            raise CheckFailed(problems[0], f"{len(problems) - 1} more problem(s)" if len(problems) > 1 else None)
        info(f"valid: {', '.join(tools) or 'nothing to check for this format'}")
    for text in (done.text, *(body for _, body in done.extra_files)):
        refuse_secrets(text)
    if out_dir is None:
        echo(done.text, nl=False, redacted=False)  # checked above: no secret; printed exactly as the file would be
        for filename, body in done.extra_files:
            echo(f"\n# ---- {filename}\n{body}", nl=False, redacted=False)
        return
    body, mode = outputs.file_text(fmt, done.spec, done.text)
    for target, text in (
        (out_dir / outputs.filename(fmt, done.spec), body),
        *((out_dir / filename, extra) for filename, extra in done.extra_files),
    ):
        write_atomic(target, text, mode=mode)
        info(f"wrote {target}")


def render_fleet(
    fleet_file: Path,
    fmt: str,
    layout: str,
    image: str | None,
    servectl_bin: str,
    validate: bool,
    python: Path | None,
    out_dir: Path | None,
    with_monitoring: bool = False,
) -> None:
    """`servectl render --fleet FLEET.yaml --format compose|systemd [--fleet-layout ...] [--with-monitoring]
    [--validate] [-o DIR]`."""
    from servectl.fleet import deploy
    from servectl.fleet.sizing import load

    if with_monitoring and fmt != "compose":
        raise UserError(
            f"--with-monitoring is for --format compose, not {fmt}",
            "render the fleet with --format compose, or scrape the front door's /metrics and /metrics/models",
        )
    fleet = load(fleet_file)
    dashboard = None
    if with_monitoring:
        dashboard, notes = deploy.dashboard_for(fleet, layout)
        for note in notes:
            warn(note)
    name, text = deploy.render(fleet, fmt, layout=layout, image=image, servectl_bin=servectl_bin, dashboard=dashboard)
    if validate:
        tools, problems = deploy.validate(fleet, fmt, name, text, python, with_monitoring)
        if problems:
            raise CheckFailed(problems[0], f"{len(problems) - 1} more problem(s)" if len(problems) > 1 else None)
        info(f"valid: {', '.join(tools)}")
    if out_dir is None:
        echo(text, nl=False)
        return
    write_atomic(out_dir / name, text, mode=0o644)
    info(f"wrote {out_dir / name}")
