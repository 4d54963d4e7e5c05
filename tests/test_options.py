"""One option vocabulary: an option name two commands share is the same option (servectl.cli.options: one name,
value type, range and meaning), unless it is a listed homonym; older spellings still parse but stay out of
--help; values are refused the same way on every command (exit 2 naming the option)."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import click
import pytest

from servectl.cli import options, values

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_generate"))

import reference  # noqa: E402  (docs/_generate/reference.py walks the commands the reference lists)


def every_option() -> list[tuple[str, click.Option]]:
    found = []
    for path, cmd, _ctx in reference.walk_commands():
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden and param.name != "help":
                found.append((" ".join(path[1:]), param))
    for path, cmd, _ctx in reference.walk_commands(hidden=True):  # `bench run`: hidden, reached as `bench URL`
        if cmd.hidden:
            found += [(" ".join(path[1:]), p) for p in cmd.params if isinstance(p, click.Option) and not p.hidden]
    return found


def long_name(param: click.Option) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.opts[0])


def type_of(param: click.Option) -> tuple:
    t = param.type
    kind = (type(t).__name__, getattr(t, "name", ""))
    if isinstance(t, (click.IntRange, click.FloatRange)):
        kind += (t.min, t.max)
    return kind + (param.is_flag,)


def test_an_option_two_commands_share_is_one_option_of_the_vocabulary():
    by_name: dict[str, list[tuple[str, click.Option]]] = defaultdict(list)
    for command, param in every_option():
        by_name[long_name(param)].append((command, param))
    problems = []
    for name, uses in sorted(by_name.items()):
        commands = {c for c, _ in uses}
        if len(commands) < 2 or name in options.HOMONYMS:
            continue
        concepts = {getattr(p, "concept", None) for _, p in uses}
        if None in concepts or len(concepts) > 1:
            problems.append(f"{name} on {sorted(commands)} is not one option of servectl.cli.options ({concepts})")
            continue
        concept = options.VOCABULARY[concepts.pop()]
        if len({type_of(p) for _, p in uses}) > 1:
            problems.append(f"{name}: value types differ: { {c: type_of(p) for c, p in uses} }")
        problems += [
            f"{c} {name}: help does not start with the shared meaning"
            for c, p in uses
            if not (p.help or "").startswith(concept.meaning)
        ]
    assert not problems, "\n".join(problems)


def test_the_ideas_the_issue_names_are_in_the_vocabulary_and_used_where_they_apply():
    used: dict[str, set[str]] = defaultdict(set)
    for command, param in every_option():
        if getattr(param, "concept", None):
            used[param.concept].add(command)
    expect = {
        "gpu": {"plan", "render", "up", "calibrate", "bootstrap", "patch list"},
        "preset": {"plan", "render", "up"},
        "python": {"plan", "render", "up", "demo", "serve", "bench run", "models show", "models add", "patch list"},
        "force": {"plan", "render", "up", "models add"},
        "with_proxy": {"render", "up"},
        "proxy_port": {"render", "up"},
        "nodes": {"plan", "render", "up"},
        "speculative": {"plan", "render", "up"},
        "port": {"render", "up", "demo"},
        "host": {"render", "up"},
        "listen": {"proxy", "serve"},
        "timeout": {"up", "demo", "check", "top"},
        "vllm_version": {"plan", "bootstrap", "patch list"},
        "as_json": {
            "plan",
            "up",
            "demo",
            "check",
            "status",
            "gpus",
            "diagnose",
            "envs",
            "bootstrap",
            "calibrate",
            "pull",
            "top",
            "serve",
            "bench run",
            "bench compare",
            "models list",
            "models show",
            "models add",
            "profiles list",
            "profiles show",
            "presets list",
            "patch list",
            "patch check",
            "patch apply",
        },
    }
    missing = {k: sorted(v - used[k]) for k, v in expect.items() if v - used[k]}
    assert not missing, missing


def test_older_spellings_parse_as_the_option_and_stay_out_of_help(cli):
    from servectl.cli.app import main

    def params(command: list[str], args: list[str]) -> dict:
        group_ctx = click.Context(main)
        cmd = main
        for word in command:
            cmd = cmd.get_command(group_ctx, word)
        return cmd.make_context(command[-1], [*args], parent=group_ctx).params

    assert params(["up"], ["m", "--proxy"])["with_proxy"] is True
    assert params(["up"], ["m", "--with-proxy"])["with_proxy"] is True
    assert params(["plan"], ["m", "--desktop"])["preset"] == "desktop"
    assert params(["plan"], ["m", "--headless", "--preset", "headless"])["preset"] == "headless"
    assert params(["plan"], ["m"])["preset"] is None
    assert params(["bootstrap"], ["--vllm", "0.19.1"])["vllm_version"] == "0.19.1"
    assert params(["patch", "list"], ["--vllm", "0.20.2"])["vllm_version"] == "0.20.2"
    for command, hidden in (("up", "--proxy"), ("plan", "--desktop"), ("plan", "--headless"), ("bootstrap", "--vllm ")):
        text = cli(command, "--help").stdout
        assert hidden not in text.replace("--proxy-port", "").replace("--vllm-version", ""), (command, hidden)
    clash = cli("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--desktop", "--preset", "headless")
    assert clash.exit_code == 2 and "give one" in clash.stderr


BAD_VALUES = [
    ("--speculative", "mtp:99"),
    ("--speculative", "eagle"),
    ("--nodes", "0"),
    ("--nodes", "65"),
    ("--preset", None),
    ("--preset", "nope"),
    ("--port", "0"),
    ("--proxy-port", "70000"),
]
SERVING_ONLY = ("--port", "--proxy-port")  # plan serves nothing: after MODEL, --port is a vLLM flag there


@pytest.mark.parametrize(
    "command, option, value",
    [
        ([name, "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090"], option, value)
        for name in ("plan", "render", "up")
        for option, value in BAD_VALUES
        if not (name == "plan" and option in SERVING_ONLY)
    ],
)
def test_a_bad_value_is_refused_the_same_way_everywhere(cli, command, option, value):
    args = [option] if value is None else [option, value]
    result = cli(*command, *args)
    assert result.exit_code == 2, result.output
    assert option in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["top", "--once", "--interval", "nan"],
        ["top", "--once", "--timeout", "nan"],
        ["top", "--once", "--window", "inf"],
        ["check", "--timeout", "nan"],
        ["up", "m", "--timeout", "-1"],
        ["demo", "--timeout", "inf"],
        ["plan", "m", "--vllm-version", "not.a.release!"],
        ["serve", "f.yaml", "--listen", "h:x"],
    ],
)
def test_numbers_and_addresses_are_checked_before_anything_runs(cli, argv):
    result = cli(*argv)
    assert result.exit_code == 2 and "Invalid value for" in result.stderr, result.output


def test_the_nodes_range_is_the_layouts():
    from servectl.spec.layout import MAX_NODES

    assert values.MAX_NODES == MAX_NODES


def test_commands_that_take_vllm_flags_say_how(cli):
    for command in (["render"], ["up"], ["plan"]):
        text = " ".join(cli(*command, "--help").stdout.split())
        assert "vLLM flags go after `--`" in text or "After MODEL goes the vLLM command line" in text, command
