"""`servectl up / down / status / logs / demo`: thin commands over servectl.launch."""

from __future__ import annotations

import time
from pathlib import Path

import click

from servectl.cli.app import echo, emit_json, info, warn
from servectl.fsutil import iter_lines, open_regular, read_tail
from servectl.cli.options import PORT, SECONDS
from servectl.errors import CheckFailed, UserError
from servectl.launch import startup, state, workflow


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@click.command()
@click.argument("model")
@click.option("--gpu", help="GPU profile (default: detected; tiny-cpu runs on cpu).")
@click.option("--runtime", type=click.Choice(["local", "docker", "ray"]), default="local", show_default=True,
              help="Run vLLM from its venv, in a container, or from its venv as the driver of an existing Ray cluster (--nodes, --head).")
@click.option("--port", type=PORT, default=8000, show_default=True, help="Port the server listens on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server binds.")
@click.option("--python", "python", help="Interpreter of the vLLM environment: runs the server, generates the tiny model, checks the vLLM flags (default: $SERVECTL_VLLM_PYTHON, else the bootstrapped environment that fits the recipe and GPU).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False), help="Serve this local checkpoint directory instead of the recipe's model.")
@click.option("--detach", is_flag=True, help="Leave the server running and return once it is healthy.")
@click.option("--apply-patches", "patch", is_flag=True, help="Apply known vLLM fixes to the environment before starting.")
@click.option("--timeout", type=SECONDS, default=900, show_default=True, help="Seconds the start-up may take.")
@click.option("--name", help="Deployment name (default: the model's).")
@click.option("--no-check", is_flag=True, help="Skip the API health checks after start-up (/health is still required).")
@click.option("--json", "as_json", is_flag=True, help="Print the launch summary as JSON on stdout.")
@click.option("--proxy", "with_proxy", is_flag=True, help="Also serve the sampling presets as virtual model names (servectl proxy).")
@click.option("--proxy-port", type=PORT, help="Port of the preset proxy (default: the server's port + 1).")
@click.option("--strict", is_flag=True, help="Refuse vLLM flags that cannot be checked against the vLLM that runs them.")
@click.option("--speculative", metavar="mtp[:N]|off", help="MTP speculative decoding: the recipe's depth for the GPU, N draft tokens, or off.")
@click.option("--nodes", type=click.IntRange(2, 64), help="--runtime ray: Ray nodes of the layout (pipeline parallel N, tensor parallel = the profile's GPUs).")
@click.option("--head", metavar="ADDRESS", help="--runtime ray: the Ray cluster's head (HOST:PORT of `ray start --head`).")
@click.option("--image", help="Container image for --runtime docker (default: the profile's).")
@click.option("--force", is_flag=True, help="Launch past the guards `render --force` overrides (known vLLM bugs included); "
              "--runtime docker: also start an image whose vLLM release has known bugs unpatched.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def up(model, gpu, runtime, port, host, python, model_path, detach, patch, timeout, name, no_check, as_json, with_proxy, proxy_port,
       strict, extra, speculative=None, nodes=None, head=None, image=None, force=False) -> None:
    """Start MODEL on vLLM and wait until it answers. Extra vLLM flags go after `--`."""
    workflow.up(model, gpu=gpu, runtime=runtime, port=port, host=host, python=python, model_path=model_path, detach=detach,
                patch=patch, timeout=timeout, name=name, no_check=no_check, as_json=as_json, with_proxy=with_proxy,
                proxy_port=proxy_port, extra=list(extra), strict=strict, speculative=speculative, nodes=nodes, head=head,
                image=image, force=force)


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
            warn(f"{rec.name}: no proof that servectl started what its record names ({done.why}); "
                 "removed the record and signalled nothing")
        elif isinstance(rec, state.Corrupt):
            info(f"{rec.name}: damaged record removed" + ("; stopped its processes" if alive else ""))
        else:
            info(f"stopped {rec.name}" if alive else f"{rec.name} was already gone; removed its record")
    if unverified:
        raise CheckFailed(f"did not signal anything for {', '.join(unverified)}: no proof servectl started it",
                          "stop such processes yourself if they are yours")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {deployments: [...], cleaned: [...]}.")
def status(as_json) -> None:
    """Deployments: PID or container, port, model, uptime, memory. Gone ones are reported and removed;
    corrupt records are listed until `down` removes them."""
    live, stale = state.sweep()
    if as_json:
        emit_json({"deployments": [s.as_json() for s in live], "cleaned": [s.as_json() for s in stale]})
        return
    from rich.table import Table

    for s in stale:
        warn(f"{s.record.name}: process {s.record.pid or s.record.container_id} is gone; removed its record")
    if not live:
        info("no deployments running")
        return
    table = Table("name", "state", "pid/container", "endpoint", "model", "uptime", "memory (RSS)")
    for s in live:
        verdict = s.verdict
        if isinstance(s, state.CorruptStatus):
            what = ("`servectl down` stops what carries its marker and removes it" if verdict.state == "corrupt"
                    else "`servectl down` removes the record and signals nothing")
            warn(f"{s.entry.name}: {verdict.why}; {what}")
            table.add_row(s.entry.name, verdict.state, str(s.entry.pid or "?"), "-", "-", "-", "-")
            continue
        r = s.record
        if verdict.state in ("unverified", "orphaned"):
            warn(f"{r.name}: {verdict.state}: {verdict.why}; `servectl down {r.name}` "
                 + ("stops them" if verdict.state == "orphaned" else "removes the record and signals nothing"))
        shown = verdict.state if verdict.state != "running" else ("ready" if r.ready else "starting")
        name = r.name if not r.fleet else f"{r.name} (fleet {r.fleet.split()[0]})"
        table.add_row(name, shown, str(r.pid or (r.container_id or "")[:12]),
                      r.endpoint, r.served_model_name or r.model, fmt_duration(s.uptime_s), fmt_bytes(s.rss_bytes))
    from servectl.cli.app import console

    console.print(table)


def _latest_log(name: str) -> Path | None:
    rec = state.load(name)
    if rec is not None:
        return Path(rec.log_path)
    logs = sorted(state.logs_dir().glob(f"{state.valid_name(name)}-*.log"))
    return logs[-1] if logs else None


@click.command()
@click.argument("name", required=False)
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep printing new output until the server stops (or Ctrl-C).")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=0, help="Only the last N lines (0: all).")
def logs(name, follow_, lines) -> None:
    """Print a deployment's server log (also the last log of a stopped or failed one). Lines are printed
    escaped (control characters as \\xNN) with secrets masked; the log is streamed, never held whole."""
    if name is None:
        name = state.resolve_name(None).name
    path = _latest_log(name)
    if path is None or not path.exists():
        raise UserError(f"no log for {name!r}", "`servectl status` lists deployments")
    with open_regular(path, f"log of {name}") as fh:
        if lines:
            for line in startup.tail(read_tail(path), lines).splitlines():
                echo(line)
        else:
            for line in iter_lines(fh):
                echo(line)
        offset = fh.seek(0, 2)
    if not follow_:
        return
    follower = startup.LogFollower(path, offset)
    while True:
        for line in follower.read_lines():
            echo(line)
        rec = state.load(name)
        if rec is None or not state.is_alive(rec):
            for line in follower.read_lines():
                echo(line)
            return
        time.sleep(0.2)


@click.command()
@click.option("--port", type=PORT, help="Port for the demo server (default: a free one).")
@click.option("--python", "python", help="Interpreter of the vLLM environment (default: bootstrap one).")
@click.option("--timeout", type=SECONDS, default=300, show_default=True, help="Seconds the start-up may take.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and health report as JSON.")
def demo(port, python, timeout, as_json) -> None:
    """The whole loop on this machine's CPU: vLLM env, tiny model, up, check, down. Exit 0 only if healthy."""
    workflow.demo(port, python, timeout, as_json)
