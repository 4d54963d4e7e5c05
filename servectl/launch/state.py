"""Deployment records: one JSON file per deployment under state_dir()/deployments/.

A record is claimed (`claim`) before the server process starts: under an flock on
`.NAME.lock`, an existing live record refuses the name (exit 2), a stale one is cleaned, then
the new record is written atomically; a second `up --name X` started at the same moment waits
for the lock and then sees the first one's record. The record names its owner (the `servectl
up` process) and the deployment's marker (servectl.launch.ownership); once the server runs, its pid
and create time are saved, and also into a small side file NAME.pgid (pid, create time, marker), so a
record that later turns unreadable still leads `down` to the processes it can prove are its own.

States (`status`): running; orphaned (the server's leader or its foreground `up` is gone but processes
carrying its marker remain: `down` stops them); gone (nothing of it runs: reported once and removed);
corrupt (the record is unreadable, its side file proves the processes); unverified (no proof that
servectl started what the record names: no valid marker, pid 0/1, another user's process, a create
time that does not match, a process without the marker in its environment). `status` never signals
anything. `down` stops only processes that carry the deployment's marker (each checked before its
signal); an unverified record is removed without any signal and `down` exits 1 saying so.
Records are read with a size limit, never through a symbolic link.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

from pydantic import ValidationError

from servectl.errors import UserError
from servectl.fsutil import MIB, read_bytes_capped, write_atomic
from servectl.launch import ownership
from servectl.launch import runners as runner
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
        raise UserError(
            f"no deployment named {name!r} (names use letters, digits, '.', '_' and '-')", "`servectl status` lists deployments"
        )
    return name


def _path(name: str) -> Path:
    return deployments_dir() / f"{valid_name(name)}.json"


def _pgid_path(name: str) -> Path:
    return deployments_dir() / f"{valid_name(name)}.pgid"


RECORD_LIMIT = MIB  # a record is ~1 KiB; a larger file is not one servectl wrote


@dataclass
class Corrupt:
    """A record file that cannot be read back (damaged, huge, a link, not a file). pid, create time and
    marker come from its side file when that is intact: then they can still prove the processes."""

    name: str
    error: str
    pid: int | None = None
    create_time: float | None = None
    marker: str | None = None

    @property
    def provable(self) -> bool:
        return ownership.marker_names(self.marker, self.name)


Entry = Union[DeploymentRecord, Corrupt]


def save(record: DeploymentRecord) -> None:
    write_atomic(_path(record.name), record.model_dump_json(indent=2) + "\n")
    if record.pid is not None:
        write_atomic(
            _pgid_path(record.name),
            json.dumps({"pid": record.pid, "create_time": record.create_time, "marker": record.marker}) + "\n",
        )


def _read_json(path: Path, what: str):
    from servectl.fsutil import loads_strict

    return loads_strict(read_bytes_capped(path, RECORD_LIMIT, what, nofollow=True))


def _side_facts(name: str) -> tuple[int | None, float | None, str | None]:
    """(pid, create time, marker) from the side file, each None unless it is well formed."""
    try:
        data = _read_json(_pgid_path(name), f"side file of {name}")
    except (UserError, ValueError, OSError):
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    pid, made, marker = data.get("pid"), data.get("create_time"), data.get("marker")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
    made = float(made) if isinstance(made, (int, float)) and not isinstance(made, bool) else None
    return pid, made, marker if isinstance(marker, str) else None


def read(name: str) -> Entry | None:
    """NAME's record, a Corrupt entry when its file cannot be read back, or None when there is none."""
    path = _path(name)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = read_bytes_capped(path, RECORD_LIMIT, f"record {name}", nofollow=True)
        record = DeploymentRecord.model_validate_json(data)
        if record.name != name:
            return Corrupt(name, f"the record in {name}.json names another deployment ({record.name!r})", *_side_facts(name))
        return record
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValidationError, ValueError, UserError) as exc:
        why = (
            exc.message
            if isinstance(exc, UserError)
            else (exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__)
        )
        return Corrupt(name, f"unreadable record ({why})", *_side_facts(name))


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
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
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
            raise UserError(
                f"deployment {name!r} has a damaged record ({existing.error})",
                f"`servectl down {name}` removes it (and stops what it can prove is its own)",
            )
        if existing is not None:
            verdict = assess(existing)
            if verdict.state == "unverified":
                raise UserError(
                    f"deployment {name!r} has a record servectl cannot verify ({verdict.why})",
                    f"`servectl down {name}` removes it",
                )
            if verdict.state in ("running", "orphaned"):
                what = "already running" if existing.pid or existing.container_id else "already running (starting)"
                raise UserError(
                    f"deployment {name!r} is {what} on port {existing.port}",
                    f"`servectl down {name}` first, or pick another --name",
                )
            remove(name)
        save(record)


def list_entries() -> list[Entry]:
    out: list[Entry] = []
    folder = deployments_dir()
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json"))[:10_000]:
        if is_valid_name(path.stem) and (entry := read(path.stem)) is not None:
            out.append(entry)
    return out


def list_records() -> list[DeploymentRecord]:
    return [e for e in list_entries() if isinstance(e, DeploymentRecord)]


def launched_of(record: DeploymentRecord) -> runner.Launched:
    return runner.Launched(
        record.runtime,
        record.argv,
        Path(record.log_path),
        pid=record.pid,
        create_time=record.create_time,
        container_id=record.container_id,
        marker=record.marker,
    )


def runner_for(record: DeploymentRecord) -> runner.Runner:
    if record.runtime == "docker":
        return runner.DockerRunner()
    return runner.SubprocessRunner([])


@dataclass
class Verdict:
    """What a record's processes are: state running | orphaned | gone | unverified | corrupt, and why."""

    state: str
    why: str = ""
    process_alive: bool = False


def _marker_problem(entry: Entry) -> str | None:
    marker = entry.marker
    if not isinstance(marker, str) or not marker:
        return "the record carries no deployment marker (a record servectl did not write, or an older one)"
    if not ownership.marker_names(marker, entry.name):
        return "the record's marker belongs to another deployment or is malformed"
    return None


def assess(entry: Entry) -> Verdict:
    """The state of a deployment, from proofs only (servectl.launch.ownership); signals nothing."""
    if isinstance(entry, Corrupt):
        alive = runner.process_alive(entry.pid, entry.create_time)
        if not entry.provable:
            return Verdict("unverified", entry.error + "; no intact side file proves its processes", alive)
        problem = ownership.proof_problem(entry.pid, entry.create_time, entry.marker) if entry.pid else None
        if problem:
            return Verdict("unverified", f"{entry.error}; {problem}", alive)
        return Verdict("corrupt", entry.error, alive or bool(ownership.marked(entry.marker or "")))
    if (problem := _marker_problem(entry)) is not None:
        return Verdict("unverified", problem, runner.process_alive(entry.pid, entry.create_time))
    owner_gone = entry.owner_pid is not None and not runner.process_alive(entry.owner_pid, entry.owner_create_time)
    if entry.runtime == "docker":
        if entry.container_id is None:
            return Verdict("gone" if owner_gone else "running")
        launched = launched_of(entry)
        docker_runner = runner.DockerRunner()
        try:
            problem = docker_runner.owned(launched)
            alive = docker_runner.alive(launched)
        except Exception as exc:  # no engine answers: the container's fate is unknown
            return Verdict("unverified", f"cannot ask the Docker engine about container {entry.container_id[:12]} ({exc})")
        if problem:
            return Verdict("unverified", problem, alive)
        return Verdict("running" if alive else "gone", process_alive=alive)
    if entry.runtime != "local":
        return Verdict("gone")
    if entry.pid is None:  # starting: alive while its owner is
        return Verdict("gone" if owner_gone else "running")
    if entry.create_time is None or not isinstance(entry.pid, int) or entry.pid <= 1:
        return Verdict("unverified", f"pid {entry.pid} without a create time is no proof", runner.process_alive(entry.pid, None))
    problem = ownership.proof_problem(entry.pid, entry.create_time, entry.marker)
    leader = runner.process_alive(entry.pid, entry.create_time)
    if problem and leader:  # the recorded process runs but is not provably ours (another user, no marker)
        return Verdict("unverified", problem, True)
    if leader and not owner_gone:
        return Verdict("running", process_alive=True)
    if ownership.marked(entry.marker or ""):
        why = "its foreground `servectl up` is gone" if leader else "its server process exited"
        return Verdict("orphaned", f"{why}; processes carrying its marker remain", leader)
    return Verdict("gone")


def is_alive(record: Entry) -> bool:
    """Whether the deployment runs (or is starting): running, orphaned, or corrupt with live processes."""
    v = assess(record)
    return v.state in ("running", "orphaned") or (v.state == "corrupt" and v.process_alive)


@dataclass
class Status:
    record: DeploymentRecord
    verdict: Verdict
    rss_bytes: int | None
    uptime_s: float

    @property
    def alive(self) -> bool:
        return self.verdict.state in ("running", "orphaned")

    def as_json(self) -> dict:
        r = self.record
        return {
            "name": r.name,
            "state": self.verdict.state,
            "runtime": r.runtime,
            "pid": r.pid,
            "container_id": r.container_id,
            "host": r.host,
            "port": r.port,
            "endpoint": r.endpoint,
            "recipe": r.recipe,
            "model": r.model,
            "served_model_name": r.served_model_name,
            "uptime_s": round(self.uptime_s, 1),
            "rss_bytes": self.rss_bytes,
            "ready": r.ready,
            "detached": r.detached,
            "log": r.log_path,
            "kv_cache_tokens_reported": r.kv_cache_tokens_reported,
            "kv_cache_tokens_predicted": r.kv_cache_tokens_predicted,
            "ray_head": r.ray_head,
            "fleet": r.fleet,
            **(
                {"error": self.verdict.why, "process_alive": self.verdict.process_alive}
                if self.verdict.state in ("unverified", "orphaned")
                else {}
            ),
        }


@dataclass
class CorruptStatus:
    entry: Corrupt
    verdict: Verdict

    @property
    def alive(self) -> bool:
        return self.verdict.process_alive

    def as_json(self) -> dict:
        e = self.entry
        keys = (
            "runtime",
            "container_id",
            "host",
            "port",
            "endpoint",
            "recipe",
            "model",
            "served_model_name",
            "uptime_s",
            "rss_bytes",
            "ready",
            "detached",
            "log",
            "kv_cache_tokens_reported",
            "kv_cache_tokens_predicted",
            "ray_head",
            "fleet",
        )
        return {
            "name": e.name,
            "state": self.verdict.state,
            "pid": e.pid,
            "process_alive": self.verdict.process_alive,
            "error": self.verdict.why,
            **dict.fromkeys(keys),
        }


def status_of(record: DeploymentRecord, now: float | None = None) -> Status:
    verdict = assess(record)
    # a tree gone since the verdict counts 0 bytes, not unknown
    rss = (tree_rss(record.pid) or 0) if verdict.state == "running" and record.runtime == "local" and record.pid else None
    return Status(record, verdict, rss, (now or time.time()) - record.started_at)


def sweep() -> tuple[list[Status | CorruptStatus], list[Status]]:
    """(deployments to list, gone ones whose records were just removed). Signals nothing: leftover
    processes keep their record listed (orphaned) until `down` stops them."""
    live: list[Status | CorruptStatus] = []
    stale: list[Status] = []
    for rec in list_entries():
        if isinstance(rec, Corrupt):
            live.append(CorruptStatus(rec, assess(rec)))
            continue
        st = status_of(rec)
        if st.verdict.state == "gone":
            remove(rec.name)
            stale.append(st)
        else:
            live.append(st)
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


@dataclass
class Stopped:
    """What `stop` did: `signalled` False when it had no proof (then it sent nothing)."""

    name: str
    state: str
    signalled: bool
    why: str = ""


def stop(record: Entry, grace_s: float = runner.DEFAULT_GRACE_S) -> Stopped:
    """Stop what the deployment can prove is its own, and forget it. An unverified record is removed
    without any signal (Stopped.signalled False)."""
    verdict = assess(record)
    if verdict.state == "unverified":
        remove(record.name)
        return Stopped(record.name, verdict.state, False, verdict.why)
    if isinstance(record, Corrupt):
        ownership.stop(record.marker or "", grace_s)
    else:
        runner_for(record).stop(launched_of(record), grace_s)
    remove(record.name)
    return Stopped(record.name, verdict.state, True)
