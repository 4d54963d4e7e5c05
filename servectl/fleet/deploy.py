"""`servectl render --fleet FLEET.yaml --format compose|systemd [--with-monitoring]`: the sized fleet handed to the
pure renderers (servectl.render.fleet), and checked with the real tools as `render --validate` checks a single launch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from servectl.errors import UserError
from servectl.fleet.sizing import Fleet
from servectl.render import fleet as rendered

LAYOUTS = ("front-door", "services")


def dashboard_for(fleet: Fleet, layout: str):
    """(vLLM's dashboard for the release the fleet's servers run, notes): in the services layout each server runs
    its image (the tag's release), behind the front door the environment the fleet was planned for. Servers on
    releases whose dashboards differ get the newest release's, said in a note."""
    from servectl.catalog import dashboards
    from servectl.render.container import DEFAULT_IMAGE
    from servectl.render.monitoring import Dashboard

    members = list(fleet.members.values())
    if layout == "services":
        chosen = {m.name: dashboards.for_image(m.spec.image or DEFAULT_IMAGE) for m in members}
    else:
        chosen = {m.name: dashboards.for_release(m.share.plan.vllm_version) for m in members}
    order = [d.release for d in dashboards.DASHBOARDS]
    picked = max(chosen.values(), key=lambda d: order.index(d.release))
    notes = []
    if len({d.release for d in chosen.values()}) > 1:
        others = ", ".join(f"{n} ({d.release})" for n, d in chosen.items() if d != picked)
        notes.append(
            f"the fleet's servers run vLLM releases with different dashboards: Grafana gets vLLM {picked.release}'s; "
            f"some panels may stay empty for {others}"
        )
    return Dashboard(dashboards.text(picked), picked.release, picked.source, picked.commit), notes


def render(
    fleet: Fleet,
    fmt: str,
    *,
    layout: str = "front-door",
    image: str | None = None,
    servectl_bin: str = rendered.DEFAULT_SERVECTL_BIN,
    dashboard=None,
) -> tuple[str, str]:
    """(file name, text) of the fleet in `fmt` (compose or systemd); with `dashboard` (compose only), the monitoring
    stack too: Prometheus scraping the front door and its relay of the servers' metrics, or each model's server."""
    from servectl.fleet.metrics import RELAY_PATH

    path = str(Path(fleet.path).resolve())
    port = fleet.port or rendered.FRONT_DOOR_PORT
    if dashboard is not None and fmt != "compose":
        raise UserError(
            f"--with-monitoring is for --format compose, not {fmt}",
            "render the fleet with --format compose, or scrape the front door's /metrics and /metrics/models",
        )
    if fmt == "systemd":
        if layout != "front-door":
            raise UserError("--format systemd renders the front door (`servectl serve`)", "drop --fleet-layout services")
        if not Path(servectl_bin).is_absolute():
            raise UserError(f"--servectl-bin {servectl_bin} is not an absolute path", "systemd does not search PATH")
        secrets = sorted({s for m in fleet.members.values() for s in m.spec.secret_env})
        return rendered.systemd_filename(fleet.name), rendered.systemd_unit(fleet.name, path, servectl_bin, secrets=secrets)
    if fmt != "compose":
        raise UserError(f"a fleet renders as compose or systemd, not {fmt}", "--format compose or --format systemd")
    members = list(fleet.members.values())
    if layout == "services":
        for pool, budget in fleet.budgets.items():
            total = sum(m.share.awake_mib for m in members if m.pool == pool)
            if total > budget.budget_mib:
                raise UserError(
                    f"the models of {pool} need {total:,.0f} MiB together, more than the {budget.budget_mib:,.0f} MiB "
                    f"the fleet may hold ({budget.reason}): they cannot all run at once",
                    "render the front door (--fleet-layout front-door), which swaps them",
                )
        names = [rendered.service_name(m.name) for m in members]
        if len(set(names)) != len(names):
            raise UserError("two models map to the same Compose service name", "rename one (letters, digits, '.', '_', '-')")
        taken = sorted(set(names) & set(rendered.MONITORING_SERVICES)) if dashboard is not None else []
        if taken:
            raise UserError(
                f"model {taken[0]} has the Compose service name of the monitoring stack's server",
                "rename the model in the fleet file",
            )
        sized = [
            (m.name, replace(m.spec, host=fleet.host, port=port + i, name=m.record), m.share.awake_mib)
            for i, m in enumerate(members)
        ]
        if dashboard is None:
            return "docker-compose.yaml", rendered.compose_services(fleet.name, sized)
        doc, header = rendered.compose_services_doc(fleet.name, sized)
        targets = rendered.services_targets(fleet.name, sized)
        return "docker-compose.yaml", rendered.with_monitoring(fleet.name, doc, header, targets, dashboard)
    mounts = sorted({m.spec.model for m in members if m.spec.model.startswith("/")})
    args = (fleet.name, path, members[0].spec, fleet.host, port, mounts, image or rendered.FRONT_DOOR_IMAGE)
    if dashboard is None:
        return "docker-compose.yaml", rendered.compose_front_door(*args)
    doc, header = rendered.compose_front_door_doc(*args)
    targets = rendered.front_door_targets(fleet.name, RELAY_PATH)
    return "docker-compose.yaml", rendered.with_monitoring(fleet.name, doc, header, targets, dashboard)


def validate(
    fleet: Fleet, fmt: str, filename: str, text: str, python: Path | None, with_monitoring: bool = False
) -> tuple[list[str], list[str]]:
    """(tools run, problems): vLLM's own parser on every model's flags where a vLLM environment exists, then
    Docker Compose and the Compose schema, or systemd-analyze verify; promtool on the monitoring stack."""
    from servectl.verify import validate as checks
    from servectl.vllmenv.location import find_vllm_python
    from servectl.vllmenv.vllm_parser import vllm_parse

    tools: list[str] = []
    problems: list[str] = []
    try:
        interpreter = find_vllm_python(python)
    except UserError:
        if python is not None:
            raise
        interpreter = None
    if interpreter is not None:
        members = list(fleet.members.values())
        errors = vllm_parse([[m.spec.model, *m.spec.vllm_args] for m in members], interpreter)
        problems += [f"vllm ({m.name}): {e}" for m, e in zip(members, errors) if e]
        tools.append("vLLM argument parser")
    if fmt == "compose":
        problems += checks.compose(text)
        tools.append("docker compose + compose schema")
        if with_monitoring:
            problems += checks.monitoring(fmt, text)
            tools.append("promtool (scrape config, dashboard queries)")
    else:
        problems += checks.systemd_unit(text, filename)
        tools.append("systemd-analyze verify")
    return tools, problems
