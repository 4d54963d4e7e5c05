"""servectl's option vocabulary: every idea more than one command takes is defined here once, with one name,
value type, range and meaning, so `--gpu`, `--preset`, `--python`, `--force`, `--nodes`, ... read and behave
the same on every command. A command adds only what its use of the idea does, as a sentence of its own:

    @options.GPU("Default: the profile this machine's GPUs match.")
    @options.NODES("2 or more need --runtime ray.")
    @options.JSON()

Values are checked by the types in servectl.cli.values (exit 2 naming the option). Older spellings scripts may
use stay accepted as hidden aliases (`up --proxy` for `--with-proxy`, `plan --desktop` for `--preset desktop`,
`bootstrap --vllm` for `--vllm-version`); --help shows one name. docs/reference/options.md is generated from
VOCABULARY and the commands that use it; tests/test_options.py checks that an option name two commands share
comes from here (or is a HOMONYM: the same word for two ideas, kept because scripts use it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from servectl.cli import values

F = TypeVar("F", bound=Callable[..., Any])


class VocabularyOption(click.Option):
    """A click option tied to a concept of the vocabulary; its `aliases` parse but stay out of --help."""

    def __init__(self, param_decls: Sequence[str], *, concept: str, aliases: Sequence[str] = (), **attrs: Any):
        super().__init__([*param_decls, *aliases], **attrs)
        self.concept = concept
        self.aliases = tuple(aliases)

    def get_help_record(self, ctx: click.Context):
        if not self.aliases:
            return super().get_help_record(ctx)
        shown = copy.copy(self)
        shown.opts = [o for o in self.opts if o not in self.aliases]
        shown.secondary_opts = [o for o in self.secondary_opts if o not in self.aliases]
        return click.Option.get_help_record(shown, ctx)


@dataclass(frozen=True)
class Concept:
    """One idea: the option that carries it on every command, its value type and its meaning. Calling it gives the
    click decorator: `what` (what this command does with it, its default here) follows the meaning."""

    key: str  # the parameter's name in the command function
    title: str
    option: str
    meaning: str
    metavar: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)  # click's: type, is_flag, default, ...
    aliases: tuple[str, ...] = ()  # older spellings of the option, hidden from --help
    flag_aliases: Mapping[str, str] = field(default_factory=dict)  # older flags meaning `option VALUE`, hidden

    def __call__(self, what: str = "", *, aliases: Sequence[str] = (), **attrs: Any) -> Callable[[F], F]:
        assert set(aliases) <= set(self.aliases), aliases
        help_text = self.meaning + (f" {what}" if what else "")
        callback = _from_flag_alias if self.flag_aliases else None
        option = click.option(
            self.option,
            self.key,
            cls=VocabularyOption,
            concept=self.key,
            aliases=aliases,
            metavar=self.metavar,
            help=help_text,
            callback=callback,
            **{**self.attrs, **attrs},
        )

        def decorate(fn: F) -> F:
            fn = option(fn)
            for flag, value in self.flag_aliases.items():
                fn = click.option(
                    flag, is_flag=True, hidden=True, expose_value=False, callback=_flag_alias(self.key, self.option, value)
                )(fn)
            return fn

        return decorate


def _flag_alias(key: str, option: str, value: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    """An older flag meaning `--option VALUE` (plan's --desktop). click processes the options given first, in the
    order given, so the option may come before or after it; two that disagree are refused."""

    def callback(ctx: click.Context, param: click.Parameter, given: bool) -> None:
        if not given:
            return
        earlier = ctx.meta.get(f"alias:{key}") or ctx.params.get(key)
        if earlier not in (None, value):
            raise click.BadParameter(f"it means {option} {value}, and {option} {earlier} is given too: give one", ctx, param)
        ctx.meta[f"alias:{key}"] = value
        if key in ctx.params:  # the option itself was processed already
            ctx.params[key] = value

    return callback


def _from_flag_alias(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    alias = ctx.meta.get(f"alias:{param.name}")
    if value is not None and alias not in (None, value):
        raise click.BadParameter(f"{value}, and --{alias} is given too: give one", ctx, param)
    return value if value is not None else alias


VOCABULARY: dict[str, Concept] = {}


def _concept(*args: Any, **kw: Any) -> Concept:
    c = Concept(*args, **kw)
    VOCABULARY[c.key] = c
    return c


FLAG = {"is_flag": True}

GPU = _concept("gpu", "GPU profile", "--gpu", "GPU profile (`servectl profiles list`).", "PROFILE")
DETECTED = "Default: the profile this machine's GPUs match, and the preset its display calls for (`servectl gpus`)."
PRESET = _concept(
    "preset",
    "Utilization preset",
    "--preset",
    "Utilization preset of the GPU profile, its --gpu-memory-utilization (desktop leaves room for a display, "
    "headless does not; `servectl profiles show PROFILE` lists them). Default: without --gpu, the preset "
    "detected with the profile; with --gpu, the profile's default.",
    "NAME",
    flag_aliases={"--desktop": "desktop", "--headless": "headless"},
)
PYTHON = _concept(
    "python",
    "vLLM environment",
    "--python",
    "Interpreter of a vLLM environment (VENV/bin/python; `servectl envs` lists them).",
    "PATH",
    {"type": values.PYTHON},
)
SITE_PACKAGES = _concept(
    "site_packages",
    "vLLM site-packages",
    "--site-packages",
    "A vLLM environment's site-packages folder, in place of --python (versions read from its *.dist-info).",
    "DIR",
    {"type": click.Path(file_okay=False, path_type=Path)},
)
FORCE = _concept("force", "Override", "--force", "Go past a refusal that can be overridden, with a warning.", None, FLAG)
GUARDS = "Here: servectl's guards (one table for plan, render and up: settings vLLM fails on, known vLLM bugs)."
WITH_PROXY = _concept(
    "with_proxy",
    "Preset proxy",
    "--with-proxy",
    "Also serve the sampling presets as virtual model names <served>-<preset> (`servectl proxy`, `servectl presets list`).",
    None,
    FLAG,
    aliases=("--proxy",),
)
PROXY_PORT = _concept(
    "proxy_port",
    "Preset proxy port",
    "--proxy-port",
    "Port of the preset proxy (1-65535; default: the server's --port + 1).",
    "PORT",
    {"type": values.PORT},
)
NODES = _concept(
    "nodes",
    "Nodes",
    "--nodes",
    f"Machines the model spans: 1 (one machine, the default) or 2-{values.MAX_NODES}, vLLM's multi-node Ray "
    "layout (tensor parallel over a node's GPUs, one pipeline stage per node).",
    "N",
    {"type": values.NODES},
)
SPECULATIVE = _concept(
    "speculative",
    "MTP speculative decoding",
    "--speculative",
    "MTP speculative decoding: mtp (the recipe's depth for the GPU), mtp:N (N draft tokens, 1-16) or "
    "off. Default: as the recipe and the vLLM flags say.",
    "mtp[:N]|off",
    {"type": values.SPECULATIVE},
)
PORT = _concept(
    "port",
    "Server port",
    "--port",
    "Port the vLLM server listens on (1-65535; a container's: the host port it is published on).",
    "PORT",
    {"type": values.PORT, "default": 8000, "show_default": True},
)
HOST = _concept(
    "host",
    "Bind address",
    "--host",
    "Address the vLLM server binds (a container's: the host address its port is published on; 127.0.0.1: this machine only).",
    "ADDRESS",
    {"default": "127.0.0.1", "show_default": True},
)
LISTEN = _concept(
    "listen",
    "Listen address",
    "--listen",
    "Address a servectl server binds: HOST:PORT, [V6]:PORT or PORT (host 127.0.0.1; port 0: a free one, printed once bound).",
    "HOST:PORT",
    {"type": values.LISTEN},
)
NAME = _concept(
    "name",
    "Deployment name",
    "--name",
    "Deployment name, also its container's and unit's (letters, digits, '.', '_', '-'; default: the recipe's name).",
    "NAME",
)
JSON = _concept(
    "as_json",
    "JSON output",
    "--json",
    "Print the result as JSON on stdout instead of text (strict JSON, secrets masked).",
    None,
    FLAG,
)
TIMEOUT = _concept(
    "timeout",
    "Deadline",
    "--timeout",
    "A deadline in seconds (a finite number above 0).",
    "SECONDS",
    {"type": values.SECONDS, "show_default": True},
)
VLLM_VERSION = _concept(
    "vllm_version",
    "vLLM release",
    "--vllm-version",
    "A vLLM release, e.g. 0.20.2.",
    "VERSION",
    {"type": values.RELEASE},
    aliases=("--vllm",),
)
MODEL_PATH = _concept(
    "model_path",
    "Local checkpoint",
    "--model-path",
    "A local checkpoint directory (config.json, safetensors) served in place of the recipe's hub repo.",
    "DIR",
    {"type": click.Path(file_okay=False)},
)
IMAGE = _concept("image", "Container image", "--image", "A vLLM container image (default: the GPU profile's).", "IMAGE")
STRICT = _concept(
    "strict",
    "Strict vLLM flags",
    "--strict",
    "Refuse vLLM flags that cannot be checked against the vLLM that runs them (default: a warning, and they are passed on).",
    None,
    FLAG,
)
DRY_RUN = _concept("dry_run", "Dry run", "--dry-run", "Change nothing.", None, FLAG)
API_KEY_ENV = _concept(
    "api_key_env",
    "API key",
    "--api-key-env",
    "Environment variable holding an API key (its name is passed, never the value).",
    "VAR",
)
CAPTURE = _concept(
    "captured",
    "Captured GPU tool output",
    "--from",
    "A captured `nvidia-smi -q -x`, `nvidia-smi --query-gpu=... --format=csv`, `nvidia-smi` or "
    "`rocm-smi --json` output, read in place of probing this machine.",
    "FILE",
    {"type": click.Path(dir_okay=False, path_type=Path)},
)
PLOT = _concept(
    "plot",
    "Plot",
    "--plot",
    "Also draw a picture into FILE (.svg or .png; needs matplotlib: servectl[plot]).",
    "FILE",
    {"type": click.Path(dir_okay=False, path_type=Path)},
)


def vllm_flags() -> Callable[[F], F]:
    """The vLLM command line after `--` (render, up, patch list; plan reads it from its own tail). Their help says
    "vLLM flags go after `--`" (tests/test_options.py)."""
    return click.argument("vllm_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- VLLM_FLAGS]")


# Option names two commands use for different ideas: the name fits each, and scripts already use them.
HOMONYMS: dict[str, str] = {
    "--host": "calibrate: the machine a log came from (its calibration's key); render, up: the address the server binds",
    "--name": "models add: the name of the recipe it writes; render, up: the deployment's",
    "--model": "check: the served name, or a recipe whose parsers say what to check; diagnose: the recipe of the log; "
    "patch list: the recipe judged; proxy, bench: the served name",
    "--output": "render: the directory the files go into; bench: the result file",
}
