"""Deployment records: one JSON file per deployment under state_dir()/deployments/.

A record is claimed (`claim`) before the server process starts: under an flock on
`.NAME.lock`, an existing live record refuses the name (exit 2), a stale one is cleaned, then
the new record is written atomically; a second `up --name X` started at the same moment waits
for the lock and then sees the first one's record. The record names its owner (the `servectl
up` process); once the server runs, its pid and create time are saved, and also into a small
side file NAME.pgid, so a record that later turns corrupt or unreadable still leads `down` to
the process group. A record whose process is gone, or whose foreground owner is gone (a
SIGKILLed `up`: its watchdog stops the server), is stale: reported once and removed, along with
any orphans of its group (checked with psutil, create time included so a reused PID does not
pass for the server). A corrupt record is listed (state "corrupt") until `down` removes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

from pydantic import ValidationError

from servectl.launch import runners as runner
from servectl.errors import UserError
from servectl.fsutil import write_atomic
from servectl.paths import state_dir
from servectl.launch.record import DeploymentRecord
from servectl.verify.proctree import tree_rss


def deployments_dir() -> Path:
    return state_dir() / "deployments"


def logs_dir() -> Path:
    return state_dir() / "logs"


def log_path_for(name: str) -> Path:
    """A fresh log file per start (timestamped), so an old run's tail never passes for this one."""
    return logs_dir() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def is_valid_name(name: str) -> bool:
    from servectl.spec.models import NAME_PATTERN

    return bool(NAME_PATTERN.match(name))


def valid_name(name: str) -> str:
    """A deployment name as LaunchOptions allows it; anything else (a path, a glob) names no deployment."""
    if not is_valid_name(name):
        raise UserError(f"no deployment named {name!r} (names use letters, digits, '.', '_' and '-')",
                        "`servectl status` lists deployments")
    return name


def _path(name: str) -> Path:
    return deployments_dir() / f"{valid_name(name)}.json"


def _pgid_path(name: str) -> Path:
    return deployments_dir() / f"{valid_name(name)}.pgid"


@dataclass
class Corrupt:
    """A record file that cannot be read back; pid/create_time from the side file when it has them."""

    name: str
    error: str
    pid: int | None = None
    create_time: float | None = None


Entry = Union[DeploymentRecord, Corrupt]


def save(record: DeploymentRecord) -> None:
    write_atomic(_path(record.name), record.model_dump_json(indent=2) + "\n")
    if record.pid is not None:
        write_atomic(_pgid_path(record.name), json.dumps({"pid": record.pid, "create_time": record.create_time}) + "\n")


def _side_pid(name: str, record_text: str) -> tuple[int | None, float | None]:
    """The server's pid from the side file, else what can be parsed out of the damaged record."""
    try:
        data = json.loads(_pgid_path(name).read_text())
        return int(data["pid"]), data.get("create_time")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pid = re.search(r'"pid"\s*:\s*(\d+)', record_text)
    made = re.search(r'"create_time"\s*:\s*([0-9.]+)', record_text)
    try:
        return (int(pid.group(1)) if pid else None), (float(made.group(1)) if made else None)
    except ValueError:
        return None, None


def read(name: str) -> Entry | None:
    """NAME's record, a Corrupt entry when its file cannot be read back, or None when there is none."""
    text = ""
    try:
        text = _path(name).read_text()
        return DeploymentRecord.model_validate_json(text)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValidationError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return Corrupt(name, f"unreadable record ({why})", *_side_pid(name, text))


def load(name: str) -> DeploymentRecord | None:
    """NAME's record, None when there is none or it is corrupt (`read` tells them apart)."""
    entry = read(name)
    return entry if isinstance(entry, DeploymentRecord) else None


def remove(name: str) -> None:
    _path(name).unlink(missing_ok=True)
    _pgid_path(name).unlink(missing_ok=True)


@contextmanager
def name_lock(name: str) -> Iterator[None]:
    """Hold NAME's lock file (flock, released by the kernel if servectl dies). Never deleted:
    removing a lock file lets two processes hold 'the' lock on two different files."""
    path = deployments_dir() / f".{valid_name(name)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def claim(record: DeploymentRecord) -> None:
    """Create NAME's record before anything starts; exit 2 while another deployment holds NAME."""
    name = record.name
    with name_lock(name):
        existing = read(name)
        if isinstance(existing, Corrupt):
            raise UserError(f"deployment {name!r} has a corrupt record ({existing.error})",
                            f"`servectl down {name}` stops its processes and removes it")
        if existing is not None:
            if is_alive(existing):
                what = "already running" if existing.pid or existing.container_id else "already running (starting)"
                raise UserError(f"deployment {name!r} is {what} on port {existing.port}",
                                f"`servectl down {name}` first, or pick another --name")
            clean_stale(existing)
        save(record)


def list_entries() -> list[Entry]:
    out = []
    for path in sorted(deployments_dir().glob("*.json")):
        if is_valid_name(path.stem) and (entry := read(path.stem)) is not None:
            out.append(entry)
    return out


def list_records() -> list[DeploymentRecord]:
    return [e for e in list_entries() if isinstance(e, DeploymentRecord)]


def launched_of(record: DeploymentRecord) -> runner.Launched:
    return runner.Launched(record.runtime, record.argv, Path(record.log_path), pid=record.pid,
                           create_time=record.create_time, container_id=record.container_id)


def runner_for(record: DeploymentRecord) -> runner.Runner:
    if record.runtime == "docker":
        return runner.DockerRunner()
    if record.runtime == "dry-run":
        return runner.DryRunRunner()
    return runner.SubprocessRunner([])


def is_alive(record: Entry) -> bool:
    """The server runs, and (local runtime) so does the `up` that owns it: a foreground server whose
    owner died is an orphan its watchdog is stopping. A record without a pid / container yet is alive
    while its owner is."""
    if isinstance(record, Corrupt):
        return runner.process_alive(record.pid, record.create_time)
    owner_gone = record.owner_pid is not None and not runner.process_alive(record.owner_pid, record.owner_create_time)
    if record.runtime == "local":
        return not owner_gone and (record.pid is None or runner.process_alive(record.pid, record.create_time))
    if record.runtime == "docker":  # no watchdog stops a container: one that runs is listed until `down`
        if record.container_id is None:
            return not owner_gone
        return runner_for(record).alive(launched_of(record))
    return False


@dataclass
class Status:
    record: DeploymentRecord
    alive: bool
    rss_bytes: int | None
    uptime_s: float

    def as_json(self) -> dict:
        r = self.record
        return {
            "name": r.name, "state": "running" if self.alive else "gone", "runtime": r.runtime,
            "pid": r.pid, "container_id": r.container_id, "host": r.host, "port": r.port,
            "endpoint": r.endpoint, "recipe": r.recipe, "model": r.model,
            "served_model_name": r.served_model_name, "uptime_s": round(self.uptime_s, 1),
            "rss_bytes": self.rss_bytes, "ready": r.ready, "detached": r.detached, "log": r.log_path,
            "kv_cache_tokens_reported": r.kv_cache_tokens_reported,
            "kv_cache_tokens_predicted": r.kv_cache_tokens_predicted, "ray_head": r.ray_head, "fleet": r.fleet,
        }


@dataclass
class CorruptStatus:
    entry: Corrupt
    alive: bool

    def as_json(self) -> dict:
        e = self.entry
        keys = ("runtime", "container_id", "host", "port", "endpoint", "recipe", "model", "served_model_name",
                "uptime_s", "rss_bytes", "ready", "detached", "log", "kv_cache_tokens_reported", "kv_cache_tokens_predicted",
                "ray_head", "fleet")
        return {"name": e.name, "state": "corrupt", "pid": e.pid, "process_alive": self.alive, "error": e.error,
                **dict.fromkeys(keys)}


def status_of(record: DeploymentRecord, now: float | None = None) -> Status:
    alive = is_alive(record)
    # a tree gone since is_alive counts 0 bytes, not unknown
    rss = (tree_rss(record.pid) or 0) if alive and record.runtime == "local" and record.pid else None
    return Status(record, alive, rss, (now or time.time()) - record.started_at)


def _stop_pgid(pid: int | None, create_time: float | None, grace_s: float) -> None:
    if pid and not runner.pid_taken_by_another(pid, create_time) and runner.group_members(pid):
        runner.stop_group(pid, grace_s=grace_s)


def clean_stale(record: DeploymentRecord) -> None:
    """Remove a dead deployment's record; stop leftovers of its process group (EngineCore, workers)."""
    if record.runtime == "local":
        _stop_pgid(record.pid, record.create_time, 2.0)
    remove(record.name)


def sweep() -> tuple[list[Status | CorruptStatus], list[Status]]:
    """(deployments to list: live ones and corrupt records, stale ones that were just cleaned)."""
    live: list[Status | CorruptStatus] = []
    stale: list[Status] = []
    for rec in list_entries():
        if isinstance(rec, Corrupt):
            live.append(CorruptStatus(rec, is_alive(rec)))
            continue
        st = status_of(rec)
        if st.alive:
            live.append(st)
        else:
            clean_stale(rec)
            stale.append(st)
    return live, stale


def resolve_name(name: str | None) -> Entry:
    """The record for NAME (maybe a Corrupt one), or the only deployment when NAME is omitted."""
    records = list_entries()
    if name is None:
        if len(records) == 1:
            return records[0]
        if not records:
            raise UserError("no deployments", "start one with `servectl up MODEL`")
        raise UserError("several deployments are running: name one", "names: " + ", ".join(r.name for r in records))
    rec = read(name)
    if rec is None:
        known = ", ".join(r.name for r in records) or "none"
        raise UserError(f"no deployment named {name!r}", f"deployments: {known}")
    return rec


def stop(record: Entry, grace_s: float = runner.DEFAULT_GRACE_S) -> None:
    """Stop a deployment (whole process group / container) and forget it; a corrupt record's
    process group is found through its side file."""
    if isinstance(record, Corrupt):
        _stop_pgid(record.pid, record.create_time, grace_s)
    else:
        runner_for(record).stop(launched_of(record), grace_s)
    remove(record.name)
