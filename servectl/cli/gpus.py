"""`servectl gpus [--from FILE] [--json]`: the detected GPUs and the profile servectl would use."""

from __future__ import annotations

from pathlib import Path

import click

from servectl.cli import options
from rich.table import Table

from servectl.catalog.load import load_catalog
from servectl.cli.app import console, emit_json
from servectl.errors import UserError


def detect_and_choose(captured: Path | None = None, processes: Path | None = None):
    """Detection (live probes, or a captured nvidia-smi / rocm-smi output) and the profile choice."""
    from servectl.hardware import detect as d
    from servectl.hardware.matching import choose_profile

    if processes is not None and captured is None:
        raise UserError("--processes goes with --from", "live probes read the processes themselves")
    detection = d.detection_from_files(captured, processes) if captured is not None else d.detect()
    return detection, choose_profile(detection, load_catalog())


@click.command("gpus")
@options.CAPTURE()
@click.option(
    "--processes",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --from: a captured `nvidia-smi --query-compute-apps=pid,process_name,used_gpu_memory,gpu_name --format=csv` to attach.",
)
@options.JSON("Keys: detection, choice.")
def gpus(captured: Path | None, processes: Path | None, as_json: bool) -> None:
    """Show the detected GPUs, free memory, display, and the profile servectl would use."""
    detection, choice = detect_and_choose(captured, processes)
    if as_json:
        emit_json(
            {
                "detection": detection.model_dump(mode="json"),
                "choice": {
                    "profile": choice.profile.name,
                    "preset": choice.preset,
                    "reason": choice.reason,
                    "warnings": choice.warnings,
                    "generic": choice.generic,
                    "memory_gib": choice.profile.memory_gib,
                    "count": choice.profile.count,
                },
            }
        )
        return
    if detection.gpus:
        t = Table(title=f"GPUs ({detection.source})")
        for col in ("#", "name", "total GiB", "free GiB", "cc / gfx", "driver", "display", "processes"):
            t.add_column(col, no_wrap=col == "name")
        for g in detection.gpus:
            gib = lambda v: "-" if v is None else f"{v / 1024:.2f}"  # noqa: E731
            t.add_row(
                str(g.index),
                g.name,
                gib(g.memory_total_mib) + (" (unified)" if g.unified_memory else ""),
                gib(g.memory_free_mib),
                g.compute_capability or g.gfx_target or "-",
                g.driver_version or "-",
                {True: "yes", False: "no", None: "?"}[g.display_active],
                str(len(g.processes)),
            )
        console.print(t)
    else:
        console.print(f"no GPU: {detection.source}", highlight=False)
    console.print(f"profile: {choice.profile.name} preset {choice.preset} — {choice.reason}")
    for w in choice.warnings:
        console.print(f"warning: {w}", style="yellow")
