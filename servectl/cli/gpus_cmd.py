"""`servectl gpus [--json]` (detected hardware and the profile it maps to) and `servectl diagnose LOGFILE|-`.

`servectl diagnose` prints the root error always; it exits 0 when a rule found the cause (the diagnosis is the useful
output), 1 when none matched (the root error is still shown), 2 for unreadable input (missing file, binary data).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from servectl.catalog.load import load_catalog
from servectl.cli.app import console, emit_json
from servectl.errors import EXIT_CHECK_FAILED, UserError
from servectl.fsutil import read_text_capped


CAPTURE_LIMIT = 16 * 2**20  # nvidia-smi -q -x of a 16-GPU host is ~1 MiB


def _read(path: Path) -> str:
    """A captured tool output: text of at most CAPTURE_LIMIT bytes (servectl.fsutil), else exit 2."""
    return read_text_capped(path, CAPTURE_LIMIT, str(path))


def read_capture(path: Path) -> str:
    """A captured nvidia-smi / rocm-smi output (size-limited, text), checked to parse."""
    text = _read(path)
    from servectl.hardware.parsers import parse_captured

    try:
        parse_captured(text)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, SyntaxError) as exc:
        raise UserError(f"cannot read {path.name} as nvidia-smi or rocm-smi output ({type(exc).__name__}: {exc})",
                        "capture `nvidia-smi -q -x`, `nvidia-smi --query-gpu=... --format=csv` or `rocm-smi --json`") from None
    return text


def detect_and_choose(captured: Path | None = None, processes: Path | None = None):
    """Detection (live probes, or a captured nvidia-smi / rocm-smi output) and the profile choice."""
    from servectl.hardware import detect as d
    from servectl.hardware.matching import choose_profile

    if processes is not None and captured is None:
        raise UserError("--processes goes with --from", "live probes read the processes themselves")
    if captured is not None:
        try:
            # The capture's own figures only: unified memory (GB10) is the captured machine's, not this one's.
            detection = d.detection_from_captured(_read(captured), source=f"captured {captured.name}",
                                                  processes=_read(processes) if processes is not None else None)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, SyntaxError) as exc:  # ElementTree's ParseError is a SyntaxError
            raise UserError(f"cannot read {captured.name} as nvidia-smi or rocm-smi output ({type(exc).__name__}: {exc})",
                            "capture `nvidia-smi -q -x`, `nvidia-smi --query-gpu=... --format=csv` or `rocm-smi --json`") from None
    else:
        detection = d.detect()
    return detection, choose_profile(detection, load_catalog())


@click.command("gpus")
@click.option("--from", "captured", type=click.Path(path_type=Path, dir_okay=False),
              help="Parse a captured `nvidia-smi -q -x`, `nvidia-smi --query-gpu --format=csv`, `nvidia-smi` or `rocm-smi --json` output instead of probing.")
@click.option("--processes", type=click.Path(path_type=Path, dir_okay=False),
              help="With --from: a captured `nvidia-smi --query-compute-apps=pid,process_name,used_gpu_memory,gpu_name --format=csv` to attach.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gpus_cmd(captured: Path | None, processes: Path | None, as_json: bool) -> None:
    """Show the detected GPUs, free memory, display, and the profile servectl would use."""
    detection, choice = detect_and_choose(captured, processes)
    if as_json:
        emit_json({"detection": detection.model_dump(mode="json"),
                   "choice": {"profile": choice.profile.name, "preset": choice.preset, "reason": choice.reason,
                              "warnings": choice.warnings, "generic": choice.generic,
                              "memory_gib": choice.profile.memory_gib, "count": choice.profile.count}})
        return
    if detection.gpus:
        t = Table(title=f"GPUs ({detection.source})")
        for col in ("#", "name", "total GiB", "free GiB", "cc / gfx", "driver", "display", "processes"):
            t.add_column(col, no_wrap=col == "name")
        for g in detection.gpus:
            gib = lambda v: "-" if v is None else f"{v / 1024:.2f}"  # noqa: E731
            t.add_row(str(g.index), g.name, gib(g.memory_total_mib) + (" (unified)" if g.unified_memory else ""),
                      gib(g.memory_free_mib), g.compute_capability or g.gfx_target or "-", g.driver_version or "-",
                      {True: "yes", False: "no", None: "?"}[g.display_active], str(len(g.processes)))
        console.print(t)
    else:
        console.print(f"no GPU: {detection.source}", highlight=False)
    console.print(f"profile: {choice.profile.name} preset {choice.preset} — {choice.reason}")
    for w in choice.warnings:
        console.print(f"warning: {w}", style="yellow")


@click.command("diagnose")
@click.argument("logfile")
@click.option("--model", "model", metavar="NAME",
              help="The model of the log when the log does not say: a recipe name (its parsers and memory layout) or a repo / path (its family).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: cause, remedy, fix, evidence, rule, root_error.")
def diagnose_cmd(logfile: str, model: str | None, as_json: bool) -> None:
    """Explain a failed vLLM start from its log (LOGFILE, or - for stdin): the root error, and the cause, remedy and
    the flags that fix it when a rule knows it."""
    from servectl.verify.diagnose import explain_file, text_lines

    # streamed once, head and tail kept: any size, bounded memory (servectl.fsutil.read_log)
    found = explain_file(logfile, "stdin" if logfile == "-" else logfile, model)
    if as_json:
        emit_json(found.model_dump(mode="json"))
    else:
        for line in text_lines(found):
            console.print(line, soft_wrap=True)
    if found.rule is None:
        raise SystemExit(EXIT_CHECK_FAILED)
