"""servectl signals only what it can prove it started: a foreign process (a `sleep` in its own session) behind
every kind of damaged or planted deployment record survives `status`, `down NAME` and `down --all`.

The proof (servectl.launch.ownership): pid > 1 and not servectl itself, this user's process, the create
time the record holds, and the deployment's marker (SERVECTL_DEPLOYMENT_ID=NAME:RANDOM) in the process's
environment, checked before every signal and sent through a pidfd. A record without it is `unverified`:
`down` removes it, says it signalled nothing, exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from servectl.launch import ownership, state


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture()
def foreign():
    """A process servectl never started: `sleep` in its own session, no marker in its environment."""
    started: list[subprocess.Popen] = []

    def make(env: dict | None = None, user: int | None = None) -> subprocess.Popen:
        kwargs = {}
        if user is not None:
            kwargs = {"user": user, "group": user}
        base = {k: v for k, v in os.environ.items() if k != ownership.MARKER_ENV}
        proc = subprocess.Popen(["sleep", "600"], start_new_session=True, env={**base, **(env or {})}, **kwargs)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def record_json(name: str, pid, create_time, marker, **over) -> dict:
    data = {
        "name": name,
        "runtime": "local",
        "recipe": "tiny-cpu",
        "profile": "cpu",
        "model": "/m",
        "served_model_name": "tiny-cpu",
        "host": "127.0.0.1",
        "port": 8000,
        "pid": pid,
        "create_time": create_time,
        "marker": marker,
        "container_id": None,
        "log_path": "/nonexistent.log",
        "argv": ["vllm", "serve", "/m"],
        "started_at": time.time() - 10,
        "detached": True,
        "owner_pid": None,
        "owner_create_time": None,
        "ready": True,
    }
    data.update(over)
    return data


def made(proc) -> float:
    return psutil.Process(proc.pid).create_time()


def write(name: str, content: bytes | str, side: dict | None = None) -> None:
    folder = state.deployments_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.unlink(missing_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    if side is not None:
        (folder / f"{name}.pgid").write_text(json.dumps(side))


def damaged(kind: str, proc, tmp_path) -> None:
    """Put the record of deployment `victim` in place, damaged as `kind`, naming the foreign process."""
    mark = ownership.new_marker("victim")
    pid, ct = proc.pid, made(proc)
    if kind == "null-create-time":
        write("victim", json.dumps(record_json("victim", pid, None, mark)))
    elif kind == "truncated":
        text = json.dumps(record_json("victim", pid, ct, mark), indent=2)
        write("victim", text[: text.index('"create_time"')])
    elif kind == "truncated-with-lying-side-file":
        text = json.dumps(record_json("victim", pid, ct, mark), indent=2)
        write("victim", text[: text.index('"create_time"')], side={"pid": pid, "create_time": ct, "marker": mark})
    elif kind == "pid-1":
        write("victim", json.dumps(record_json("victim", 1, psutil.Process(1).create_time(), mark)))
    elif kind == "pid-0":
        write("victim", json.dumps(record_json("victim", 0, 0.0, mark)))
    elif kind == "negative-pid":
        write("victim", json.dumps(record_json("victim", -pid, ct, mark)))
    elif kind == "wrong-create-time":
        write("victim", json.dumps(record_json("victim", pid, ct - 100, mark)))
    elif kind == "no-marker":
        write("victim", json.dumps(record_json("victim", pid, ct, None)))
    elif kind == "marker-not-in-environment":
        write("victim", json.dumps(record_json("victim", pid, ct, mark)))
    elif kind == "marker-of-another-deployment":  # the process carries deployment other's marker; victim borrows it
        write("victim", json.dumps(record_json("victim", pid, ct, proc.marker)))
    elif kind == "record-names-another-deployment":  # victim.json holds deployment other's record, marker and all
        write("victim", json.dumps(record_json("other", pid, ct, proc.marker)))
    elif kind == "non-numeric-pid":
        write("victim", json.dumps(record_json("victim", "abc", ct, mark)))
    elif kind == "float-pid":
        write("victim", json.dumps(record_json("victim", pid + 0.5, ct, mark)))
    elif kind == "huge-record":
        write("victim", json.dumps(record_json("victim", pid, ct, mark, argv=["x" * 2**20, "y" * 2**20])))
    elif kind == "symlinked-record":
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps(record_json("victim", pid, ct, mark)))
        state.deployments_dir().mkdir(parents=True, exist_ok=True)
        (state.deployments_dir() / "victim.json").unlink(missing_ok=True)
        (state.deployments_dir() / "victim.json").symlink_to(target)
    elif kind == "binary-garbage":
        write("victim", b"\x00\xff\xfe" * 1000)
    elif kind == "nan-create-time":
        write("victim", '{"name": "victim", "pid": %d, "create_time": NaN}' % pid)
    elif kind == "pid-of-servectl-itself":
        me = psutil.Process()
        write("victim", json.dumps(record_json("victim", me.pid, me.create_time(), mark)))
    elif kind == "docker-container-not-labelled":
        write("victim", json.dumps(record_json("victim", None, None, mark, runtime="docker", container_id="0" * 64)))
    else:
        raise AssertionError(kind)


KINDS = [
    "null-create-time",
    "truncated",
    "truncated-with-lying-side-file",
    "pid-1",
    "pid-0",
    "negative-pid",
    "wrong-create-time",
    "no-marker",
    "marker-not-in-environment",
    "marker-of-another-deployment",
    "record-names-another-deployment",
    "non-numeric-pid",
    "float-pid",
    "huge-record",
    "symlinked-record",
    "binary-garbage",
    "nan-create-time",
    "pid-of-servectl-itself",
    "docker-container-not-labelled",
]


PF_EXITING = 0x4  # include/linux/sched.h: the task is exiting (a fatal signal was delivered)


def signalled(pid: int) -> str | None:
    """What shows that `pid` got a signal, the moment after kill(2) returned to the sender: it is pending (the
    process's or its thread's mask in /proc/PID/status), being acted on (PF_EXITING in /proc/PID/stat), or done
    (the process is gone or a zombie). None: nothing was sent. No pause is needed to see it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    pending = {k: v.strip() for k, v in (ln.split(":", 1) for ln in status.splitlines()) if k in ("SigPnd", "ShdPnd")}
    if any(int(v, 16) for v in pending.values()):
        return f"a pending signal {pending}"
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3, flags field 9
    if fields[0] in ("Z", "X") or int(fields[6]) & PF_EXITING:
        return f"exiting (state {fields[0]})"
    return None


def _survives(proc, pid1_before: float) -> None:
    assert proc.poll() is None and not signalled(proc.pid), (
        f"the foreign process got a signal ({signalled(proc.pid)}, exit {proc.returncode})"
    )
    assert psutil.Process(1).create_time() == pid1_before


@pytest.mark.parametrize("kind", KINDS)
def test_a_foreign_process_behind_a_damaged_record_survives_status_and_down(kind, foreign, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # the docker case: no engine answers
    carries_other = kind in ("marker-of-another-deployment", "record-names-another-deployment")
    env = {ownership.MARKER_ENV: ownership.new_marker("other")} if carries_other else None
    proc = foreign(env=env)
    proc.marker = env[ownership.MARKER_ENV] if env else None
    if env:  # the foreign process must really carry the other deployment's marker for this case to mean anything
        time.sleep(0.1)
        assert ownership.carries(proc.pid, env[ownership.MARKER_ENV])
    pid1 = psutil.Process(1).create_time()
    for command in (["status", "--json"], ["status"], ["down", "victim"], ["down", "--all"]):
        damaged(kind, proc, tmp_path)
        result = cli(*command)
        _survives(proc, pid1)
        assert result.exit_code in (0, 1), (command, result.exit_code, result.output)
        if command[0] == "status":
            assert result.exit_code == 0
            if "--json" in command:
                data = json.loads(result.stdout)
                states = [d["state"] for d in data["deployments"]] + [d["state"] for d in data["cleaned"]]
                assert states and set(states) <= {"unverified", "gone"}, data
        else:  # the record is gone afterwards, and an unverified one says nothing was signalled
            assert not (state.deployments_dir() / "victim.json").exists()
            if result.exit_code == 1:
                assert "signalled nothing" in result.stderr and "Traceback" not in result.output
    time.sleep(0.3)  # and once more after a pause, as a user would find it
    _survives(proc, pid1)


def test_another_users_process_carrying_the_marker_is_never_signalled(foreign, cli):
    if os.getuid() != 0:
        pytest.skip("making another user's process needs root (CI runs the suite as root)")
    mark = ownership.new_marker("victim")
    # another user's process carrying this deployment's very marker: only the user check stands in the way
    proc = subprocess.Popen(
        ["sleep", "600"], start_new_session=True, user=65534, group=65534, env={**os.environ, ownership.MARKER_ENV: mark}
    )
    try:
        time.sleep(0.1)
        write("victim", json.dumps(record_json("victim", proc.pid, made(proc), mark)))
        assert ownership.proof_problem(proc.pid, made(proc), mark) == f"pid {proc.pid} belongs to another user"
        assert ownership.marked(mark) == []
        result = cli("down", "victim")
        assert result.exit_code == 1 and "signalled nothing" in result.stderr
        time.sleep(0.3)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_the_deployments_own_marked_processes_are_stopped_and_nothing_else(foreign, cli):
    """The positive side: a record with its marker and a server carrying it goes down, a foreign one stays."""
    mark = ownership.new_marker("mine")
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(600)']); time.sleep(600)",
        ],
        start_new_session=True,
        env={**os.environ, ownership.MARKER_ENV: mark},
    )
    bystander = foreign()
    try:
        deadline = time.monotonic() + 20
        while len(ownership.marked(mark)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = ownership.marked(mark)
        assert server.pid in pids and len(pids) == 2  # the server and the child it forked (inherits the marker)
        write("mine", json.dumps(record_json("mine", server.pid, made(server), mark)))
        assert json.loads(cli("status", "--json").stdout)["deployments"][0]["state"] == "running"
        result = cli("down", "mine")
        assert result.exit_code == 0, result.output
        assert server.wait(timeout=20) is not None
        assert ownership.marked(mark) == []
        assert bystander.poll() is None
    finally:
        for pid in ownership.marked(mark):
            ownership.send(pid, 9, mark)
        if server.poll() is None:
            server.kill()
            server.wait()
