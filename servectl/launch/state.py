"""Deployment records: one JSON file per deployment under state_dir()/deployments/.

Written atomically when a server starts (before waiting for it), so a servectl that crashes
or is killed leaves a record `servectl status` / `down` can still act on. A record whose
process is gone (checked with psutil, create time included so a reused PID does not pass
for the server) is stale: reported once and removed, along with any orphans of its group.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from servectl.launch import runners as runner
from servectl.errors import UserError
from servectl.fsutil import write_atomic
from servectl.paths import state_dir
from servectl.launch.record import DeploymentRecord


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


def save(record: DeploymentRecord) -> None:
    write_atomic(_path(record.name), record.model_dump_json(indent=2) + "\n")


def load(name: str) -> DeploymentRecord | None:
    try:
        return DeploymentRecord.model_validate_json(_path(name).read_text())
    except FileNotFoundError:
        return None
    except (ValidationError, json.JSONDecodeError, ValueError):
        return None  # a corrupt record is treated as absent; list_records reports it


def remove(name: str) -> None:
    _path(name).unlink(missing_ok=True)


def list_records() -> list[DeploymentRecord]:
    out = []
    for path in sorted(deployments_dir().glob("*.json")):
        if not is_valid_name(path.stem):
            continue
        rec = load(path.stem)
        if rec is not None:
            out.append(rec)
    return out


def launched_of(record: DeploymentRecord) -> runner.Launched:
    return runner.Launched(record.runtime, record.argv, Path(record.log_path), pid=record.pid,
                           create_time=record.create_time, container_id=record.container_id)


def runner_for(record: DeploymentRecord) -> runner.Runner:
    if record.runtime == "docker":
        return runner.DockerRunner()
    if record.runtime == "dry-run":
        return runner.DryRunRunner()
    return runner.SubprocessRunner([])


def is_alive(record: DeploymentRecord) -> bool:
    if record.runtime == "local":
        return runner.process_alive(record.pid, record.create_time)
    if record.runtime == "docker":
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
            "kv_cache_tokens_predicted": r.kv_cache_tokens_predicted,
        }


def status_of(record: DeploymentRecord, now: float | None = None) -> Status:
    alive = is_alive(record)
    rss = runner.tree_rss(record.pid) if alive and record.runtime == "local" and record.pid else None
    return Status(record, alive, rss, (now or time.time()) - record.started_at)


def clean_stale(record: DeploymentRecord) -> None:
    """Remove a dead deployment's record; stop leftovers of its process group (EngineCore, workers)."""
    if (record.runtime == "local" and record.pid and not runner.pid_taken_by_another(record.pid, record.create_time)
            and runner.group_members(record.pid)):
        runner.stop_group(record.pid, grace_s=2.0)
    remove(record.name)


def sweep() -> tuple[list[Status], list[Status]]:
    """(live deployments, stale ones that were just cleaned)."""
    live, stale = [], []
    for rec in list_records():
        st = status_of(rec)
        if st.alive:
            live.append(st)
        else:
            clean_stale(rec)
            stale.append(st)
    return live, stale


def resolve_name(name: str | None) -> DeploymentRecord:
    """The record for NAME, or the only deployment when NAME is omitted."""
    records = list_records()
    if name is None:
        if len(records) == 1:
            return records[0]
        if not records:
            raise UserError("no deployments", "start one with `servectl up MODEL`")
        raise UserError("several deployments are running: name one", "names: " + ", ".join(r.name for r in records))
    rec = load(name)
    if rec is None:
        known = ", ".join(r.name for r in records) or "none"
        raise UserError(f"no deployment named {name!r}", f"deployments: {known}")
    return rec


def stop(record: DeploymentRecord, grace_s: float = runner.DEFAULT_GRACE_S) -> None:
    """Stop a deployment (whole process group / container) and forget it."""
    runner_for(record).stop(launched_of(record), grace_s)
    remove(record.name)
