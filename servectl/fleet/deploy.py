"""`servectl render --fleet FLEET.yaml --format compose|systemd`: the sized fleet handed to the pure renderers
(servectl.render.fleet), and checked with the real tools as `render --validate` checks a single launch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from servectl.errors import UserError
from servectl.fleet.sizing import Fleet
from servectl.render import fleet as rendered

LAYOUTS = ("front-door", "services")


def render(fleet: Fleet, fmt: str, *, layout: str = "front-door", image: str | None = None,
           servectl_bin: str = rendered.DEFAULT_SERVECTL_BIN) -> tuple[str, str]:
    """(file name, text) of the fleet in `fmt` (compose or systemd)."""
    path = str(Path(fleet.path).resolve())
    port = fleet.port or rendered.FRONT_DOOR_PORT
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
                raise UserError(f"the models of {pool} need {total:,.0f} MiB together, more than the {budget.budget_mib:,.0f} MiB "
                                f"the fleet may hold ({budget.reason}): they cannot all run at once",
                                "render the front door (--fleet-layout front-door), which swaps them")
        names = [rendered.service_name(m.name) for m in members]
        if len(set(names)) != len(names):
            raise UserError("two models map to the same Compose service name", "rename one (letters, digits, '.', '_', '-')")
        sized = [(m.name, replace(m.spec, host=fleet.host, port=port + i, name=m.record), m.share.awake_mib)
                 for i, m in enumerate(members)]
        return "docker-compose.yaml", rendered.compose_services(fleet.name, sized)
    mounts = sorted({m.spec.model for m in members if m.spec.model.startswith("/")})
    return "docker-compose.yaml", rendered.compose_front_door(fleet.name, path, members[0].spec, fleet.host, port, mounts,
                                                              image or rendered.FRONT_DOOR_IMAGE)


def validate(fleet: Fleet, fmt: str, filename: str, text: str, python: Path | None) -> tuple[list[str], list[str]]:
    """(tools run, problems): vLLM's own parser on every model's flags where a vLLM environment exists, then
    Docker Compose and the Compose schema, or systemd-analyze verify."""
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
    else:
        problems += checks.systemd_unit(text, filename)
        tools.append("systemd-analyze verify")
    return tools, problems
