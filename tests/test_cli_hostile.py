"""Every command under generated hostile arguments: exit 0, 1 or 2, one plain line, no traceback,
nothing half-written; --json output parses as strict JSON (no NaN / Infinity); every file written parses
with its consumer (JSON strictly, YAML, shell scripts with `bash -n`, systemd units with
`systemd-analyze verify` where it is installed); no raw control character (anything but newline and
tab) and no canary secret (the value of HF_TOKEN and of a vLLM secret option among the generated values)
appears anywhere in stdout, stderr or the files written.

Arguments come from each command's own click parameters: names from the catalog or hostile
text (unicode, control characters, shell metacharacters, rich markup, huge values), numbers in
and far out of range, files with malformed YAML / binary content, and vLLM flags after `--`.
The user's directories (XDG_*) and the config file are redirected to a fresh temporary tree per
example, so no real vLLM environment, deployment or setting is reachable; commands that would
install, serve or wait forever get one argument fixed that keeps them short (bootstrap --dry-run,
proxy against a closed port, up/demo with a --python that does not exist). Each run keeps all
values sane but one, so it reaches the renderers and the planner with that one hostile value.
100 runs per command by default (seconds); SERVECTL_HOSTILE_EXAMPLES=1000 for a longer search.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servectl.cli import main
from servectl.console import has_raw_control

CANARY = "hostilecanary7c1e"  # HF_TOKEN's value in every run, and a value the generator passes to secret flags
CLOSED_PORT_URL = "http://127.0.0.1:1"  # nothing listens on port 1: connections are refused at once

HOSTILE = [
    "",
    " ",
    "a b",
    "-",
    "--",
    "--help-not",
    "$(touch pwned)",
    "`id`",
    "; rm -rf ~",
    "a|b",
    "a&&b",
    "'",
    '"',
    "\\",
    "\n",
    "x\nExecStartPre=/bin/touch /tmp/owned",
    "\r",
    "\t",
    "\x00",
    "\x1b[31mred",
    "\x7f",
    "\u202e",
    "é中🙂",
    "[bold]x[/]",
    "[/x]",
    "[red",
    "%n",
    "%%",
    "$HOME",
    "${X}",
    "$$",
    "{{x}}",
    "..",
    "../../etc/passwd",
    "/",
    "a" * 5000,
    "9" * 40,
    "-1",
    "0",
    "1e309",
    "nan",
    "true",
    "null",
    "{}",
    "[1,2",
    "x: [unclosed",
    ": -",
    "*a",
    "&anchor",
    "!!python/object:os.system",
    "rtx[/x]",
    CANARY,
    f"http://u:{CANARY}@h:1",
    "\x1b]0;t\x07",
    "\x9b2J",
]
MALFORMED_FILES = [
    b"",
    b"\x00\xff\xfe binary",
    b"presets: [unclosed",
    b"presets:\n  x: {temperature: hot}\n",
    b": - :\n\t- x",
    b"!!python/object/apply:os.system ['touch pwned']\n",
    b"presets: !!binary AAAA\n",
    b"a: &a [*a, *a, *a]\n",
    "é中🙂\n".encode(),
    b"\xef\xbb\xbfpresets: {}\n",
    b"presets: null\n",
    b"presets:\n  " + b"x" * 10000 + b": {}\n",
]
VLLM_FLAGS = [
    "-tp",
    "--tensor-parallel-size",
    "--tensor_parallel_size",
    "--max-model-len",
    "--max-num-seqs",
    "--max-num-seq",
    "--kv-cache-dtype",
    "--dtype",
    "--chat-template",
    "--served-model-name",
    "--api-key",
    "--compilation-config",
    "--compilation-config.mode",
    "-O3",
    "--enforce-eager",
    "--no-enforce-eager",
    "--speculative-config",
    "--hf-overrides",
    "--port",
    "--host",
    "--gpu-memory-utilization",
    "-q",
    "--api-ke",
    "--hf-token",
    "--api_key",
]


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE), st.text(max_size=40), st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=20)
    )


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


COMMANDS = _commands(main)


# Values servectl accepts, per option name: a run keeps all but one value sane, so it reaches deep
# into the command (the renderers, the planner) with the one hostile value it carries.
SANE = {
    "secrets": ["HF_TOKEN", "API_KEY_2"],
    "name": ["dep-1", "a.b_c"],
    "image": ["vllm/vllm-openai:v0.20.2"],
    "host": ["127.0.0.1", "::1", "0.0.0.0"],
    "ray_dashboard_host": ["127.0.0.1"],
    "listen": ["127.0.0.1:8332"],
    "vllm_bin": ["/opt/vllm/bin/vllm"],
    "servectl_bin": ["/opt/servectl/bin/servectl"],
    "names": ["qwen3.5", "auto"],
    "api_key_env": ["API_KEY"],
    "preset": ["desktop", "headless"],
    "duration": ["1s"],
    "speculative": ["mtp", "off"],
    "vllm_version": ["0.20.2", "0.32.0"],
    "head": ["127.0.0.1:6379"],
    "desktop": ["0.5"],
    "headless": ["0.9"],
}


def sane_value(param: click.Parameter, files: list[str], catalog) -> st.SearchStrategy[str]:
    t = param.type
    if isinstance(t, click.Choice):
        return st.sampled_from(list(t.choices))
    if isinstance(t, click.types.IntRange):
        lo = t.min if t.min is not None else 1
        return st.integers(lo, max(lo, min(t.max if t.max is not None else lo + 9000, lo + 9000))).map(str)
    if isinstance(t, click.types.IntParamType):
        return st.integers(8332, 8339).map(str) if "port" in (param.name or "") else st.integers(1, 9000).map(str)
    if isinstance(t, click.types.FloatParamType):
        return st.integers(1, 5).map(str)
    if isinstance(t, click.Path) or param.name in ("logfile", "log"):
        return st.sampled_from(files)
    if param.name in ("url", "backend"):
        return st.sampled_from([CLOSED_PORT_URL, CLOSED_PORT_URL + "/v1"])
    if param.name == "gpu":
        return st.sampled_from([*catalog.gpus])
    if param.name == "model":
        return st.sampled_from([*catalog.models, "tiny-cpu"])
    if param.name in SANE:
        return st.sampled_from(SANE[param.name])
    return st.sampled_from([*catalog.models, *catalog.gpus])


def hostile_value(param: click.Parameter) -> st.SearchStrategy[str]:
    t = param.type
    if isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):
        return st.one_of(
            st.integers(-2, 70000).map(str), st.integers().map(str), st.floats(allow_nan=True).map(repr), hostile_text()
        )
    return hostile_text()


def vllm_tail() -> st.SearchStrategy[list[str]]:
    """vLLM flags, mostly as flag-value pairs (aliases, `=` forms, dotted and JSON values), some bare."""
    value = st.one_of(
        st.sampled_from(
            [
                '{"mode": 3}',
                "[1,2]",
                "fp8",
                "auto",
                "8",
                "two",
                "1e9",
                "64k",
                "-1",
                "0",
                CANARY,
                '{"num_speculative_tokens": 1e400}',
                '{"num_speculative_tokens": "two"}',
            ]
        ),
        st.integers(-5, 10**6).map(str),
        hostile_text(),
    )
    flag = st.one_of(st.sampled_from(VLLM_FLAGS), hostile_text())
    pair = st.one_of(
        st.tuples(flag, value).map(list), st.tuples(flag, value).map(lambda p: [f"{p[0]}={p[1]}"]), flag.map(lambda f: [f])
    )
    return st.lists(pair, max_size=4).map(lambda pairs: [w for p in pairs for w in p])


# Commands that would install, serve or wait: one argument fixed so each run ends quickly.
FORCED = {
    ("bootstrap",): ["--dry-run"],
    ("demo",): ["--python", "/nonexistent/bin/python", "--timeout", "1"],
    ("up",): ["--python", "/nonexistent/bin/python", "--timeout", "1"],
    ("check",): ["--timeout", "2"],
}
EXCLUDED_OPTIONS = {
    ("proxy",): {"served"},  # with --model it skips discovery and would serve until stopped
    ("logs",): {"follow_"},
    ("render",): {"validate"},  # real validators are exercised by their own tests (seconds each)
}


@st.composite
def command_line(draw, path, cmd, files, catalog) -> list[str]:
    """A command line with sane values everywhere but (usually) one hostile spot: an option's value,
    a positional argument, or the vLLM flags after `--`."""
    args = list(path)
    excluded = EXCLUDED_OPTIONS.get(path, set())
    params = [p for p in cmd.params if p.name not in excluded]
    hostile = draw(st.sampled_from([*(p.name for p in params), "nothing"]))
    tail: list[str] = []
    for param in params:
        bad = param.name == hostile
        if isinstance(param, click.Argument):
            if param.nargs == -1:
                tail = draw(vllm_tail() if bad else sane_tail())
                continue
            if param.required or bad or draw(st.booleans()):
                args.append(draw(hostile_value(param) if bad else sane_value(param, files, catalog)))
            continue
        if not (param.required or bad) and draw(st.integers(0, 3)) != 0:  # each other option one run in four
            continue
        opt = draw(st.sampled_from(param.opts))
        if param.is_flag:
            args.append(opt)
        else:
            args += [opt, draw(hostile_value(param) if bad else sane_value(param, files, catalog))]
    args += FORCED.get(path, [])
    if path == ("proxy",) and "--backend" not in args:
        args += ["--backend", CLOSED_PORT_URL]
    if tail:
        args += (["--"] if draw(st.integers(0, 9)) else []) + tail  # without `--` one run in ten
    return args


def sane_tail() -> st.SearchStrategy[list[str]]:
    pairs = [
        ["--max-model-len", "4096"],
        ["-tp", "1"],
        ["--enforce-eager"],
        ["--max_num_seqs=8"],
        ["--compilation-config.mode", "3"],
        ["--chat-template", "x\n{{ messages }}"],
    ]
    return st.lists(st.sampled_from(pairs), max_size=3).map(lambda ps: [w for p in ps for w in p])


def strict_json(text: str):
    def refuse(name: str):
        raise ValueError(f"{name} is not strict JSON")

    return json.loads(text, parse_constant=refuse)


def _consumer_problem(p: Path, text: str) -> str | None:
    """Whether a written file parses with what reads it (None: it does)."""
    import shutil
    import subprocess

    if p.suffix == ".json":
        try:
            strict_json(text)
        except ValueError as exc:
            return str(exc)
    elif p.suffix in (".yaml", ".yml"):
        try:
            list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            return str(exc)
    elif p.suffix == ".sh":
        proc = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return proc.stderr.strip()
    elif p.suffix == ".service" and shutil.which("systemd-analyze"):
        from servectl.verify.validate import systemd_unit

        # the binaries ExecStart names are not installed here: only what the parser says counts
        parse = [
            ln
            for ln in systemd_unit(text, p.name)
            if "not executable" not in ln and "No such file" not in ln and "Command " not in ln
        ]
        if parse:
            return "; ".join(parse)
    return None


def _half_written(root: Path, seen: dict) -> list[str]:
    """Temp files left by an interrupted atomic write, files their consumer cannot read, and any file holding a
    raw control character or the canary. `seen`: path -> text already checked (only new or changed files)."""
    bad = []
    for p in root.rglob("*"):
        if not p.is_file() or p.name.startswith("input-") or p.suffix in (".pickle", ".lock"):
            continue
        if p.name.endswith(".tmp"):
            bad.append(f"{p}: leftover temp file")
            continue
        text = p.read_bytes().decode("utf-8", "replace")
        if seen.get(p) == text:
            continue
        seen[p] = text
        if CANARY in text:
            bad.append(f"{p}: holds the canary secret")
        if has_raw_control(text):
            bad.append(f"{p}: holds a raw control character")
        if (problem := _consumer_problem(p, text)) is not None:
            bad.append(f"{p}: {problem}")
    return bad


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_survives_hostile_arguments(path, cmd, catalog, monkeypatch):
    root = Path(tempfile.mkdtemp(prefix="servectl-hostile-"))
    files = []
    for i, data in enumerate(MALFORMED_FILES):
        f = root / f"input-{i}.yaml"
        f.write_bytes(data)
        files.append(str(f))
    files += [str(root / "missing.yaml"), str(root), str(root / "out")]
    for var in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(root / var.lower()))
    monkeypatch.delenv("SERVECTL_VLLM_PYTHON", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # no container is ever started
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.chdir(root)  # relative paths among the hostile values (say, -o '$(x)') land in the temp tree
    runner = CliRunner()
    seen: dict = {}

    @settings(
        max_examples=int(os.environ.get("SERVECTL_HOSTILE_EXAMPLES", "100")),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(args=command_line(path, cmd, files, catalog), config=st.sampled_from(files))
    def check(args, config):
        monkeypatch.setenv("SERVECTL_CONFIG", config)
        result = runner.invoke(main, args, catch_exceptions=True)
        shown = f"servectl {' '.join(map(repr, args))}\nexit {result.exit_code}\n{result.output[-2000:]}"
        assert result.exit_code in (0, 1, 2), shown
        assert result.exception is None or isinstance(result.exception, SystemExit), shown
        assert "Traceback" not in result.output and "internal error" not in result.output, shown
        for line in result.stderr.splitlines():
            if line.startswith("error:"):  # servectl's own error line: one printable line
                assert all(ch >= " " and ch != "\x7f" for ch in line), shown
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            assert CANARY not in text, f"the canary secret in {stream}: {shown}"
            assert not has_raw_control(text), f"a raw control character in {stream}: {shown}"
        if "--json" in args and result.exit_code in (0, 1) and result.stdout.strip():
            strict_json(result.stdout)  # --json output: one strict JSON document
        problems = _half_written(root, seen)
        assert not problems, f"{shown}\n{problems}"

    check()
