"""The fleet file, its plan and its renders, without starting anything: `servectl serve FLEET.yaml --plan`,
one line per mistake naming file and line, sizing from the planner, `render --fleet` checked with the real tools."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from servectl.verify import validate


def write(tmp_path: Path, text: str, name: str = "fleet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def tiny_fleet(tmp_path: Path, limit: str, extra: str = "") -> Path:
    return write(
        tmp_path,
        f"""
        name: t
        memory_limit: {limit}
        models:
          chat:
            model: tiny-cpu
            aliases: [assistant]
            preload: true
          noise:
            model: tiny-cpu
            ttl: 90s
        {extra}""",
    )


def plan_json(cli, path: Path) -> dict:
    result = cli("serve", str(path), "--plan", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_plan_swaps_when_only_one_fits_and_co_locates_when_both_do(cli, tmp_path):
    one = plan_json(cli, tiny_fleet(tmp_path, "100M"))
    assert one["pools"][0]["budget_mib"] == 100 and "memory_limit" in one["pools"][0]["reason"]
    chat, noise = one["models"]
    # the tiny recipe pins 64 MiB of KV cache on cpu; the planner adds its weights
    assert chat["kv_cache_bytes"] == 64 * 2**20 and 64 < chat["awake_mib"] < 100
    assert chat["flags"] == ["--kv-cache-memory-bytes", "64M"] and chat["sleep"] is False and noise["ttl_s"] == 90
    assert one["preload"] == [
        {"model": "chat", "starts": True, "used_mib": chat["awake_mib"], "reason": one["preload"][0]["reason"]}
    ]
    assert one["on_request"] == [
        {
            "model": "noise",
            "outcome": "run",
            "reason": one["on_request"][0]["reason"],
            "evict": [{"model": "chat", "action": "stop", "frees_mib": chat["awake_mib"]}],
        }
    ]
    assert one["together"]["cpu"]["fits"] is False
    both = plan_json(cli, tiny_fleet(tmp_path, "200M"))
    assert both["on_request"][0]["evict"] == [] and both["on_request"][0]["outcome"] == "run"
    assert both["together"]["cpu"]["fits"] is True
    text = cli("serve", str(tiny_fleet(tmp_path, "100M")), "--plan").stdout
    assert "first request for noise: starts" in text and "stop chat" in text and "cannot all run at once" in text


def test_every_mistake_is_one_line_naming_file_and_line(cli, tmp_path):
    path = write(
        tmp_path,
        """
        listen: 127.0.0.1:99999
        memory_limit: lots
        queue:
          max_waiting: 0
        models:
          chat:
            model: tiny-cpu
            ttl: soon
            concurrency: -1
            colour: blue
          other:
            gpu: cpu
        """,
    )
    result = cli("serve", str(path), "--plan")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    where = {re.search(r":(\d+): ([\w.]+)", ln).group(2): int(re.search(r":(\d+): ", ln).group(1)) for ln in lines}
    assert where == {
        "listen": 1,
        "memory_limit": 2,
        "queue.max_waiting": 4,
        "models.chat.ttl": 8,
        "models.chat.concurrency": 9,
        "models.chat.colour": 10,
        "models.other.model": 11,
    }, lines
    assert all(ln.startswith(f"error: {path}:") for ln in lines) and "Traceback" not in result.stderr


def test_names_recipes_profiles_and_flags_are_checked_with_their_lines(cli, tmp_path):
    models = tmp_path / "ckpt"
    models.mkdir()
    (models / "config.json").write_text("{}")
    path = write(
        tmp_path,
        f"""
        models:
          chat:
            model: tiny-cpuu
          coder:
            model: tiny-cpu
            gpu: rtx-9090
          "bad name":
            model: tiny-cpu
          local:
            model: {models}
          flags:
            model: tiny-cpu
            args: [--max-model-len]
          twin:
            model: tiny-cpu
            aliases: [ok]
          ok:
            model: tiny-cpu
          big:
            model: tiny-cpu
            args: [--kv-cache-memory-bytes, 64G]
        """,
    )
    result = cli("serve", str(path), "--plan")
    assert result.exit_code == 2
    err = result.stderr
    assert re.search(r":3: models\.chat\.model: unknown model 'tiny-cpuu': did you mean 'tiny-cpu'", err), err
    assert re.search(r":6: models\.coder\.gpu: unknown profile 'rtx-9090'", err), err
    assert re.search(r":7: models\.bad name: model name 'bad name'", err), err
    # a directory is served with the recipe servectl derives from its config.json: an empty config is no model
    assert re.search(r":10: models\.local\.model: .*config\.json has no num_hidden_layers", err), err
    assert re.search(r":13: models\.flags\.args: cannot read the vLLM flags", err), err
    assert re.search(r":16: models\.twin\.aliases\.0: the name 'ok' is also models\.ok", err), err
    assert re.search(r":19: models\.big: needs [\d,]+ MiB on cpu, more than the fleet may hold there", err), err
    assert len(err.strip().splitlines()) == 7


def test_bad_yaml_and_non_fleet_files_are_one_line(cli, tmp_path):
    broken = write(tmp_path, "models: [\n", "broken.yaml")
    result = cli("serve", str(broken), "--plan")
    assert result.exit_code == 2 and "not valid YAML" in result.stderr and result.stderr.count("\n") == 1
    result = cli("serve", str(tmp_path / "missing.yaml"), "--plan")
    assert result.exit_code == 2 and "cannot read" in result.stderr
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00models")
    assert cli("serve", str(binary), "--plan").exit_code == 2
    assert cli("serve", str(write(tmp_path, "models: {}\n", "empty.yaml")), "--plan").exit_code == 2
    assert cli("serve", str(tiny_fleet(tmp_path, "100M")), "--json").exit_code == 2  # --json goes with --plan
    deep = write(tmp_path, "models:\n  - " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")  # deeper than Python recurses
    result = cli("serve", str(deep), "--plan")
    assert result.exit_code == 2 and "nested too deep" in result.stderr and result.stderr.count("\n") == 1


def test_gpu_fleet_sizes_each_model_for_its_context_and_pins_it(cli, tmp_path, catalog):
    path = write(
        tmp_path,
        """
        gpu: rtx-pro-6000-blackwell
        models:
          coder:
            model: qwen3.5-35b-a3b-nvfp4
            context: 32768
            concurrency: 4
            preload: true
          chat:
            model: qwen3.5-35b-a3b-mxfp4
            context: 16384
        """,
    )
    data = plan_json(cli, path)
    coder, chat = data["models"]
    profile = catalog.gpu("rtx-pro-6000-blackwell")
    assert data["pools"][0]["budget_mib"] == pytest.approx(profile.total_memory_gib * 1024 * 0.95, rel=1e-3)
    # the recipe's own 20600M pin gives way to the context: 4 requests of 32768 tokens
    assert coder["max_model_len"] == 32768 and coder["max_concurrency"] >= 4
    assert "--kv-cache-memory-bytes" in coder["flags"] and "20600M" not in coder["flags"]
    util = float(coder["flags"][coder["flags"].index("--gpu-memory-utilization") + 1])
    assert util * profile.total_memory_gib * 1024 < coder["awake_mib"] <= data["pools"][0]["budget_mib"]
    assert coder["sleep"] and "--enable-sleep-mode" in coder["flags"] and coder["asleep_mib"] < coder["awake_mib"]
    # both fit? the plan says what a first request for chat does
    fits = coder["awake_mib"] + chat["awake_mib"] <= data["pools"][0]["budget_mib"]
    assert (data["on_request"][0]["evict"] == []) == fits


def test_a_model_without_context_fills_the_budget_alone(cli, tmp_path):
    path = write(
        tmp_path,
        """
        gpu: rtx-5090
        memory_limit: 30G
        models:
          big:
            model: qwen3.5-35b-a3b-nvfp4
        """,
    )
    data = plan_json(cli, path)
    big, budget = data["models"][0], data["pools"][0]["budget_mib"]
    assert budget < 30 * 1024 and "preset" in data["pools"][0]["reason"]  # the preset's share is below the limit here
    assert budget - 2 <= big["awake_mib"] <= budget and "fills the device" in big["sizing"]


def test_the_cpu_build_has_no_sleep_mode_and_says_so(cli, tmp_path):
    data = plan_json(cli, tiny_fleet(tmp_path, "100M", extra="sleep: on"))
    assert all(m["sleep"] is False and m["asleep_mib"] is None for m in data["models"])
    assert any("CPU build has no sleep mode" in n and "chat, noise stop instead of sleeping" in n for n in data["notes"])
    data = plan_json(cli, tiny_fleet(tmp_path, "100M", extra="sleep: off"))
    assert not any("sleep" in n for n in data["notes"])


def test_old_releases_get_the_utilization_share_that_gives_the_same_blocks(catalog):
    from servectl.plan import share

    recipe, profile = catalog.model("qwen3.5-35b-a3b-nvfp4"), catalog.gpu("rtx-pro-6000-blackwell")
    args = ["--max-model-len", "32768", "--kv-cache-memory-bytes", "4G"]
    new = share.share_for(recipe, profile, args, {}, vllm_version="0.18.0")
    old = share.share_for(recipe, profile, args, {}, vllm_version="0.10.1")
    assert new.flags[:2] == ["--kv-cache-memory-bytes", "4096M"]
    assert old.flags[0] == "--gpu-memory-utilization" and "--kv-cache-memory-bytes" not in old.flags
    assert old.plan.num_blocks >= new.plan.num_blocks and "0.10.1 has no --kv-cache-memory-bytes" in old.sizing


@pytest.fixture(scope="module")
def stub_servectl(tmp_path_factory):
    import shutil
    import subprocess

    if shutil.which("systemd-analyze") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "systemd"], check=False, capture_output=True)
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: apt-get install systemd (scripts/test does)"
    path = tmp_path_factory.mktemp("bin") / "servectl"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_render_fleet_compose_front_door_and_services_validate(cli, tmp_path):
    both = tiny_fleet(tmp_path, "200M")
    front = cli("render", "--fleet", str(both), "--format", "compose")
    assert front.exit_code == 0, front.stderr
    assert validate.compose(front.stdout) == []
    assert f"{both.resolve()}:/etc/servectl/fleet.yaml:ro" in front.stdout and "servectl" in front.stdout
    services = cli("render", "--fleet", str(both), "--format", "compose", "--fleet-layout", "services")
    assert services.exit_code == 0, services.stderr
    assert validate.compose(services.stdout) == []
    import yaml

    doc = yaml.safe_load(services.stdout)
    assert sorted(doc["services"]) == ["chat", "noise"]
    for svc in doc["services"].values():
        assert "--kv-cache-memory-bytes" in svc["command"] and svc["labels"]["io.servectl.fleet"] == "t"
    assert [s["ports"][0] for s in doc["services"].values()] == ["127.0.0.1:8080:8000", "127.0.0.1:8081:8000"]
    refused = cli("render", "--fleet", str(tiny_fleet(tmp_path, "100M")), "--format", "compose", "--fleet-layout", "services")
    assert refused.exit_code == 2 and "cannot all run at once" in refused.stderr


def test_render_fleet_systemd_unit_passes_systemd_analyze(cli, tmp_path, stub_servectl):
    path = tiny_fleet(tmp_path, "100M")
    result = cli(
        "render",
        "--fleet",
        str(path),
        "--format",
        "systemd",
        "--servectl-bin",
        stub_servectl,
        "--validate",
        "-o",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 0, result.stderr
    assert "systemd-analyze verify" in result.stderr
    unit = (tmp_path / "out" / "servectl-fleet-t.service").read_text()
    assert f"ExecStart={stub_servectl} serve {path.resolve()}" in unit and "KillMode=mixed" in unit
    assert validate.systemd_unit(unit.replace("KillMode=mixed", "KillMode=sometimes"), "x.service")
    assert cli("render", "--fleet", str(path), "--format", "argv").exit_code == 2
    assert cli("render", "tiny-cpu", "--fleet", str(path), "--format", "compose").exit_code == 2
    assert cli("render", "tiny-cpu", "--format", "argv").exit_code == 2  # MODEL needs --gpu


@pytest.mark.parametrize(
    "text",
    [
        "models:\n  a: &a {model: *a}\n",  # a recursive alias
        "x: &x [*x, *x]\nmodels: {m: {model: tiny-cpu, args: *x}}\n",
        "lol: &l [a, a, a, a, a, a, a, a, a]\nl2: &l2 [*l, *l, *l, *l, *l, *l, *l, *l, *l]\nmodels: {m: {model: tiny-cpu, args: [*l2, *l2]}}\n",
        'models:\n  "\\e[2Jevil\\nname":\n    model: "\\e]0;title\\a"\n',
        "models: {m: {model: tiny-cpu, ttl: 1e400}}\n",
        "models: {m: {model: tiny-cpu, ttl: .nan}}\n",
        "models: {m: {model: tiny-cpu, context: 99999999999999999999}}\n",
        "models: {m: {model: tiny-cpu, env: {HF_TOKEN: [1]}}}\n",
        "models: {m: {model: ../../../../../../etc, recipe: tiny-cpu}}\n",  # a directory, but no checkpoint
        "listen: '[::1]:99999'\nmodels: {m: {model: tiny-cpu}}\n",
        "models:\n" + "".join(f"  m{i}: {{model: tiny-cpu, aliases: [a]}}\n" for i in range(3)),
    ],
)
def test_hostile_fleet_files_are_bad_input_one_clean_line_each(cli, tmp_path, text):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    result = cli("serve", str(path), "--plan")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    for line in result.stderr.splitlines():
        assert line.startswith("error: ") and all(ch >= " " and ch != "\x7f" for ch in line), line


def test_serving_asks_the_vllm_environment_for_flags_tiny_model_and_preflight(tmp_path, vllm_python):
    """What `servectl serve` checks before it listens (no server starts): the flags with the environment's own vLLM
    parser, the generated tiny model's directory, the pre-flight and known-bug checks of `up`."""
    from servectl.fleet import sizing
    from servectl.fleet.config import FleetFileError

    good = write(
        tmp_path,
        """
        models:
          chat:
            model: tiny-cpu
            args: [--max-num-seqs, "8"]
        """,
    )
    fleet = sizing.load(good, serving=True)
    spec = fleet.members["chat"].spec
    assert Path(spec.model).is_dir() and (Path(spec.model) / "config.json").is_file()  # the generated checkpoint
    assert spec.vllm_args[spec.vllm_args.index("--max-num-seqs") + 1] == "8"
    bad = write(
        tmp_path,
        """
        models:
          chat:
            model: tiny-cpu
            args: [--max-num-seqz, "8"]
        """,
        "bad.yaml",
    )
    with pytest.raises(FleetFileError) as exc:
        sizing.load(bad, serving=True)
    assert len(exc.value.problems) == 1 and ":4: models.chat.args: vLLM" in exc.value.problems[0]
    assert "--max-num-seqz" in exc.value.problems[0] and "did you mean --max-num-seqs" in exc.value.problems[0]


def test_a_second_serve_of_a_running_fleet_is_refused(tmp_path, monkeypatch):
    import os
    import time

    import psutil

    from servectl.errors import UserError
    from servectl.fleet import server, sizing
    from servectl.launch import ownership, state
    from servectl.launch.record import DeploymentRecord

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    fleet = sizing.load(tiny_fleet(tmp_path, "100M"))
    me = psutil.Process()
    # a server of fleet `t` being started by a live servectl (this test process stands in for it; nothing is signalled)
    state.save(
        DeploymentRecord(
            name="t-chat",
            runtime="local",
            recipe="tiny-cpu",
            profile="cpu",
            model="m",
            host="127.0.0.1",
            port=9,
            log_path=str(tmp_path / "log"),
            argv=[],
            started_at=time.time(),
            owner_pid=os.getpid(),
            owner_create_time=me.create_time(),
            fleet="t http://127.0.0.1:8080",
            marker=ownership.new_marker("t-chat"),
        )
    )
    with pytest.raises(UserError, match="fleet t is already served"):
        server.refuse_a_second_copy(fleet)
    state.remove("t-chat")
    server.refuse_a_second_copy(fleet)  # nothing of fleet t runs: fine
