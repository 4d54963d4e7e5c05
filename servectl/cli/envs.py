"""`servectl envs`: the vLLM environments servectl made (or finds), side by side."""

from __future__ import annotations

import click

from servectl.cli import options

from servectl.cli.app import console, emit_json, info


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


@click.command()
@options.JSON("Keys below.")
@click.option("--no-size", is_flag=True, help="Skip measuring each environment's size on disk.")
def envs(as_json: bool, no_size: bool) -> None:
    """The vLLM environments servectl made (or finds) side by side: release, platform, patch state, size.

    --json keys: root, envs: [{name, path, python, vllm, platform, variant, distribution, torch, created, recorded,
    patches: [{id, status}], patch_state (patched | unpatched | none-needed | unknown), size_bytes}].
    """
    from servectl.vllmenv.envs import list_envs, report, venvs_root

    rows = [report(e, with_size=not no_size) for e in list_envs()]
    if as_json:
        emit_json({"root": str(venvs_root()), "envs": rows})
        return
    if not rows:
        info(f"no vLLM environments in {venvs_root()}: `servectl bootstrap` makes the one for this machine")
        return
    from rich.table import Table

    table = Table(title=f"vLLM environments ({venvs_root()})")
    for col in ("name", "vLLM", "platform", "torch", "patches", "size"):
        table.add_column(col, no_wrap=col == "name")
    for r in rows:
        patches = r["patch_state"] + (
            f" ({', '.join(p['id'] + ' ' + p['status'] for p in r['patches'])})" if r["patches"] else ""
        )
        table.add_row(
            r["name"], r["vllm"] or "-", f"{r['platform']} {r['variant']}", r["torch"] or "-", patches, _size(r["size_bytes"])
        )
    console.print(table)
