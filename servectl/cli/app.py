"""The click group every command module attaches to, and the shared output helpers.

Commands stay thin: parse, call a layer, print (rich for people, --json for scripts).
A ServectlError becomes one line on stderr and its exit code; never a traceback.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click
from servectl import __version__
from servectl.console import console, echo, emit_json, err_console, info, plain, safe, safe_block, warn  # noqa: F401  (the commands' output helpers)
from servectl.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERRUPTED, ServectlError

# Every command: name -> (module:attribute, one-line help); each lives in servectl/cli/<its name>.py. Modules load
# only when their command runs, so `servectl render` never imports the HTTP clients, the proxy server or the
# Docker SDK; `--help` lists the commands from this table without importing any of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("servectl.cli.bench:bench", "Benchmark a served model with vLLM's own `vllm bench serve`; compare results."),
    "bootstrap": (
        "servectl.cli.bootstrap:bootstrap",
        "Make the vLLM environment for this machine (and recipe), patched and verified.",
    ),
    "calibrate": ("servectl.cli.calibrate:calibrate", "Store a correction from a real vLLM start-up log for later plans."),
    "check": ("servectl.cli.check:check", "Prove a served model answers sensibly (health, chat, sanity, tools, ...)."),
    "demo": ("servectl.cli.demo:demo", "The whole loop on this machine's CPU: tiny model, up, check, down."),
    "diagnose": ("servectl.cli.diagnose:diagnose", "Root cause of a failed vLLM start from its log, and the flag that fixes it."),
    "down": ("servectl.cli.down:down", "Stop a deployment (the processes carrying its marker, or its container)."),
    "envs": ("servectl.cli.envs:envs", "List the vLLM environments: release, platform, patch state, size."),
    "gpus": ("servectl.cli.gpus:gpus", "Detect GPUs (NVML, rocm-smi, unified memory) and the profile that fits."),
    "logs": ("servectl.cli.logs:logs", "Show a deployment's server log."),
    "models": ("servectl.cli.models:models", "Model recipes: curated, your own, any hub repo or checkpoint directory."),
    "patch": ("servectl.cli.patch:patch", "Known vLLM bugs: check, apply, revert, verify in an installed vLLM."),
    "plan": ("servectl.cli.plan:plan", "Predict vLLM's memory and KV cache before anything loads."),
    "presets": ("servectl.cli.presets:presets", "Sampling presets the proxy serves."),
    "profiles": ("servectl.cli.profiles:profiles", "GPU profiles in the catalog."),
    "pull": ("servectl.cli.pull:pull", "Download a hub model's files vLLM loads into the HF cache (disk checked first)."),
    "proxy": ("servectl.cli.proxy:proxy", "Serve sampling presets as virtual model names in front of vLLM."),
    "render": ("servectl.cli.render:render", "Render the launch: vllm argv, config, docker, compose, systemd, Kubernetes."),
    "serve": ("servectl.cli.serve:serve", "Several models behind one endpoint, started and swapped by what fits in memory."),
    "status": ("servectl.cli.status:status", "List deployments and whether they are running."),
    "top": ("servectl.cli.top:top", "Watch vLLM servers live from /metrics: load, tokens/s, latency, KV cache, memory."),
    "up": ("servectl.cli.up:up", "Plan, patch-check, launch vLLM, follow its start-up, health-check it."),
}


def show_detected(profile: str, preset: str, reason: str, warnings: tuple[str, ...] | list[str] = ()) -> None:
    """The profile and preset detection chose, and why, on stderr (the preset shown is the one used)."""
    info(f"profile {profile} (preset {preset}): {reason}")
    for w in warnings:
        warn(w)


def detected(gpu: str | None):
    """Without --gpu: this machine's profile choice (servectl.hardware.models.Choice), shown; with it, None."""
    if gpu is not None:
        return None
    from servectl.catalog.load import load_catalog
    from servectl.hardware.matching import choose_for_this_machine

    choice = choose_for_this_machine(load_catalog())
    show_detected(choice.profile.name, choice.preset, choice.reason, choice.warnings)
    return choice


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {safe(message)}", err=True)
    raise SystemExit(code)


def _validation_message(exc: Any) -> str:
    """A pydantic ValidationError in one line: the first problem and where."""
    first = exc.errors()[0]
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "value_error":  # servectl's own validators name the option themselves
        return msg
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {msg}" if where else msg


def _boundary(exc: Exception) -> None:
    """Exceptions that are not ServectlError: the expected kinds get their exit code, the rest is a bug."""
    import subprocess

    from packaging.version import InvalidVersion
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        _fail(_validation_message(exc), EXIT_BAD_INPUT)
    if isinstance(exc, InvalidVersion):
        _fail(f"{exc} (expected a release such as 0.20.2)", EXIT_BAD_INPUT)
    if isinstance(exc, subprocess.TimeoutExpired):
        cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd[:3]))
        _fail(f"`{cmd} ...` did not finish within {exc.timeout:.0f} s", EXIT_CHECK_FAILED)
    if type(exc).__module__.startswith("docker."):
        _fail(f"docker: {exc}", EXIT_CHECK_FAILED)
    if isinstance(exc, UnicodeError):
        _fail(f"cannot encode or decode a value: {exc}", EXIT_BAD_INPUT)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", EXIT_CHECK_FAILED)
    if os.environ.get("SERVECTL_DEBUG"):
        raise exc
    _fail(f"internal error ({type(exc).__name__}: {exc}); please report it (SERVECTL_DEBUG=1 shows where)", EXIT_CHECK_FAILED)


class ServectlGroup(click.Group):
    """Loads commands lazily, and is the CLI's one error boundary: every failure is one plain line on
    stderr (never read as markup, control characters shown escaped) and an exit code.

    ServectlError: its own code (2 bad input, 1 failed check). Values the schemas refuse (pydantic)
    and malformed versions: 2. Timeouts, OS and Docker errors: 1. Ctrl-C: 130. Anything else is a
    bug in servectl: one line saying so (exit 1); SERVECTL_DEBUG=1 re-raises it with its traceback.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name][0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's own messages (usage errors: an unknown option, a bad value) go out escaped and
        redacted like every other line: they quote what the user typed."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        import io
        import sys

        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.ClickException as exc:
            buf = io.StringIO()
            exc.show(file=buf)
            click.echo(safe_block(buf.getvalue()), err=True, nl=False)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(0)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # No command line can carry NUL (execve ends each word there); only an in-process caller can.
        if any("\x00" in a for a in args):
            _fail("an argument contains a NUL character", EXIT_BAD_INPUT)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except ServectlError as exc:
            *first, last = exc.lines()
            for line in first:
                click.echo(f"error: {safe(line)}", err=True)
            _fail(last, exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            _boundary(exc)


@click.group(cls=ServectlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="servectl")
def main() -> None:
    """Serve quantized models on vLLM with one command.

    \b
    servectl up qwen3.5-35b-a3b-nvfp4              detect GPU, plan, patch-check, launch, health-check
    servectl plan MODEL --gpu rtx-5090             predict vLLM's memory and KV cache before loading
    servectl render MODEL --gpu P --format F       vllm argv / config / docker / compose / systemd / k8s
    servectl patch check|apply|revert              fix known vLLM bugs in an installed environment
    servectl check http://127.0.0.1:8000           prove a served model answers sensibly
    servectl serve fleet.yaml                      several models behind one endpoint, placed by memory
    servectl demo                                  the whole loop on this machine's CPU with a tiny model
    """
