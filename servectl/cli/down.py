"""`servectl down [NAME|--all]`: stop deployments servectl can prove it started, and forget them."""

from __future__ import annotations

import click

from servectl.cli.app import info, warn
from servectl.errors import CheckFailed, UserError
from servectl.launch import state


@click.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Stop every deployment.")
def down(name, all_) -> None:
    """Stop a deployment (the processes that carry its marker, or its container) and forget it. A record
    servectl cannot prove it wrote is removed without any signal, and down exits 1 saying so."""
    if all_ and name:
        raise UserError("give a NAME or --all, not both", "`servectl status` lists deployments")
    records = state.list_entries() if all_ else [state.resolve_name(name)]
    unverified = []
    for rec in records:
        alive = state.is_alive(rec)
        done = state.stop(rec)
        if not done.signalled:
            unverified.append(rec.name)
            warn(
                f"{rec.name}: no proof that servectl started what its record names ({done.why}); "
                "removed the record and signalled nothing"
            )
        elif isinstance(rec, state.Corrupt):
            info(f"{rec.name}: damaged record removed" + ("; stopped its processes" if alive else ""))
        else:
            info(f"stopped {rec.name}" if alive else f"{rec.name} was already gone; removed its record")
    if unverified:
        raise CheckFailed(
            f"did not signal anything for {', '.join(unverified)}: no proof servectl started it",
            "stop such processes yourself if they are yours",
        )
