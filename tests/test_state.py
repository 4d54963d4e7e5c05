"""Deployment records: atomic JSON files, stale detection with psutil, and the status/down/logs commands.
Stand-in servers carry their deployment's marker (SERVECTL_DEPLOYMENT_ID) as a server `up` starts does;
test_ownership.py puts foreign processes behind damaged records."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest

import os

from servectl.launch import ownership, state
from servectl.launch.record import DeploymentRecord


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


MARKERS: dict[str, str] = {}


def marker_of(name: str) -> str:
    return MARKERS.setdefault(name, ownership.new_marker(name))


def _record(name="d1", pid=None, create_time=None, **kw) -> DeploymentRecord:
    kw.setdefault("marker", marker_of(name))
    return DeploymentRecord(
        name=name,
        runtime="local",
        recipe="tiny-cpu",
        profile="cpu",
        model="/models/tiny",
        served_model_name="tiny-cpu",
        host="127.0.0.1",
        port=8132,
        pid=pid,
        create_time=create_time,
        log_path=str(state.log_path_for(name)),
        argv=["vllm", "serve", "/models/tiny"],
        started_at=time.time() - 65,
        **kw,
    )


def spawn(name: str | None) -> subprocess.Popen:
    """A real process in its own group standing in for a server; with a name, it carries that deployment's marker."""
    env = {**os.environ, **({ownership.MARKER_ENV: marker_of(name)} if name else {})}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True, env=env)


@pytest.fixture()
def procs():
    started: list[subprocess.Popen] = []

    def make(name: str | None) -> subprocess.Popen:
        started.append(spawn(name))
        return started[-1]

    yield make
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture()
def sleeper(procs):
    """A stand-in server of deployment "svc"."""
    return procs("svc")


def test_roundtrip_is_json_on_disk():
    rec = _record(kv_cache_tokens_reported=190650)
    state.save(rec)
    path = state.deployments_dir() / "d1.json"
    assert json.loads(path.read_text())["kv_cache_tokens_reported"] == 190650
    assert state.load("d1") == rec
    assert [r.name for r in state.list_records()] == ["d1"]
    assert not list(state.deployments_dir().glob(".*tmp"))  # atomic write left no temp file


def test_corrupt_record_with_an_intact_side_file_still_proves_its_processes(procs):
    server = procs("bad")
    made = psutil.Process(server.pid).create_time()
    state.save(_record("bad", server.pid, made))
    (state.deployments_dir() / "bad.json").write_text("{not json")
    assert state.load("bad") is None and state.list_records() == []
    (entry,) = state.list_entries()
    assert isinstance(entry, state.Corrupt) and (entry.name, entry.pid, entry.create_time) == ("bad", server.pid, made)
    live, stale = state.sweep()
    assert stale == [] and [s.as_json()["state"] for s in live] == ["corrupt"]
    assert state.read("bad") == entry  # listing does not remove it: `down` does
    done = state.stop(state.resolve_name("bad"), grace_s=2)
    assert done.signalled and server.wait(timeout=10) is not None and state.list_entries() == []
    assert not (state.deployments_dir() / "bad.pgid").exists()


def test_corrupt_record_without_its_side_file_is_unverified_and_never_signalled(procs):
    server = procs("bad")
    state.save(_record("bad", server.pid, psutil.Process(server.pid).create_time()))
    (state.deployments_dir() / "bad.json").write_text("{not json")
    (state.deployments_dir() / "bad.pgid").unlink()
    live, _ = state.sweep()
    assert [s.as_json()["state"] for s in live] == ["unverified"]
    done = state.stop(state.resolve_name("bad"), grace_s=2)
    assert not done.signalled and state.list_entries() == []
    time.sleep(0.3)
    assert server.poll() is None


def test_a_directory_in_place_of_a_record_is_corrupt_not_a_crash():
    (state.deployments_dir() / "odd.json").mkdir(parents=True)
    (entry,) = state.list_entries()
    assert isinstance(entry, state.Corrupt) and entry.pid is None
    assert state.assess(entry).state == "unverified"


def test_a_server_whose_foreground_owner_died_is_orphaned_until_down(procs):
    server = procs("orphan")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state.save(
        _record(
            "orphan", server.pid, psutil.Process(server.pid).create_time(), owner_pid=dead.pid, owner_create_time=time.time() - 5
        )
    )
    live, stale = state.sweep()
    assert stale == [] and [s.as_json()["state"] for s in live] == ["orphaned"]
    time.sleep(0.2)
    assert server.poll() is None  # status signals nothing
    assert state.stop(state.resolve_name("orphan"), grace_s=2).signalled
    assert server.wait(timeout=10) is not None


def test_claim_refuses_a_live_name_and_takes_over_a_stale_one(sleeper):
    from servectl.errors import UserError

    me = psutil.Process()
    state.claim(_record("x", owner_pid=me.pid, owner_create_time=me.create_time()))  # starting: no pid yet
    with pytest.raises(UserError, match="'x' is already running"):
        state.claim(_record("x").model_copy(update={"port": 9999}))
    state.save(_record("x", owner_pid=sleeper.pid + 10**6))  # its owner is gone: stale
    state.claim(_record("x").model_copy(update={"port": 9998}))
    assert state.load("x").port == 9998


def test_stale_records_are_reported_and_removed(procs):
    sleeper = procs("live")
    p = psutil.Process(sleeper.pid)
    state.save(_record("live", sleeper.pid, p.create_time()))
    state.save(_record("reused", sleeper.pid, p.create_time() - 50))  # same PID, another process
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state.save(_record("dead", dead.pid, time.time() - 10))
    live, stale = state.sweep()
    assert [s.record.name for s in live] == ["live"]
    assert sorted(s.record.name for s in stale) == ["dead", "reused"]
    assert live[0].rss_bytes > 0 and live[0].uptime_s >= 60
    assert [r.name for r in state.list_records()] == ["live"]
    assert sleeper.poll() is None  # the reused-PID record did not signal the live process


def test_resolve_name():
    from servectl.errors import UserError

    with pytest.raises(UserError, match="no deployments"):
        state.resolve_name(None)
    state.save(_record("a"))
    assert state.resolve_name(None).name == "a"
    state.save(_record("b"))
    with pytest.raises(UserError, match="several"):
        state.resolve_name(None)
    with pytest.raises(UserError, match="no deployment named 'c'"):
        state.resolve_name("c")


def test_status_json_and_down(cli, sleeper):
    state.save(_record("svc", sleeper.pid, psutil.Process(sleeper.pid).create_time()))
    res = cli("status", "--json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    (dep,) = data["deployments"]
    assert dep["name"] == "svc" and dep["state"] == "running" and dep["pid"] == sleeper.pid
    assert dep["endpoint"] == "http://127.0.0.1:8132/v1" and dep["rss_bytes"] > 0
    res = cli("down", "svc")
    assert res.exit_code == 0, res.output
    assert sleeper.wait(timeout=10) is not None
    assert state.load("svc") is None


def test_a_ray_driven_deployment_shows_its_head_and_goes_down(cli, procs):
    """`up --runtime ray` records the cluster's head; status shows it, down stops the local vLLM (the cluster is not ours)."""
    sleeper = procs("multi")
    state.save(_record("multi", sleeper.pid, psutil.Process(sleeper.pid).create_time(), ray_head="10.0.0.1:6379"))
    (dep,) = json.loads(cli("status", "--json").stdout)["deployments"]
    assert dep["ray_head"] == "10.0.0.1:6379" and dep["state"] == "running"
    assert cli("down", "multi").exit_code == 0
    assert sleeper.wait(timeout=10) is not None and state.load("multi") is None


def test_status_after_kill(cli, sleeper):
    state.save(_record("svc", sleeper.pid, psutil.Process(sleeper.pid).create_time()))
    sleeper.kill()
    sleeper.wait()
    data = json.loads(cli("status", "--json").stdout)
    assert data["deployments"] == [] and data["cleaned"][0]["name"] == "svc" and data["cleaned"][0]["state"] == "gone"
    assert state.load("svc") is None


def test_logs_of_a_stopped_deployment(cli):
    rec = _record("old")
    state.logs_dir().mkdir(parents=True)
    (state.logs_dir() / "old-20260101-000000.log").write_text("line1\nERROR boom\n")
    res = cli("logs", "old", "-n", "1")
    assert res.exit_code == 0 and res.stdout.strip() == "ERROR boom"
    assert cli("logs", "nope").exit_code == 2
    del rec


def test_down_unknown_name_is_user_error(cli):
    res = cli("down", "ghost")
    assert res.exit_code == 2 and "no deployment named 'ghost'" in res.stderr
