"""What `servectl top` watches: deployment names or URLs -> targets (URL, and the deployment record when
servectl started it), and the memory of a target's server.

Memory is read only where servectl can prove the server is its own: a local deployment's recorded pid
whose create time matches the record (the RSS of its process tree), or a docker deployment's recorded
container (the container's memory as docker stats reports it). A URL that matches a record's port on a
loopback address is that deployment; any other URL is watched through /metrics alone.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlparse

from servectl.errors import UserError
from servectl.launch import runners, state
from servectl.launch.record import DeploymentRecord
from servectl.observe.fetch import FetchError, within
from servectl.verify.proctree import tree_rss


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # base URL, no /v1
    record: DeploymentRecord | None = None


def _base(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(
            f"{url!r} is not an http(s) URL or a deployment name", "e.g. http://127.0.0.1:8000, or a name `servectl status` lists"
        )
    try:
        port = parsed.port
    except ValueError:
        raise UserError(f"{url!r} has an invalid port", "e.g. http://127.0.0.1:8000") from None
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"{parsed.scheme}://{host}{f':{port}' if port else ''}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _record_for_url(base: str, records: list[DeploymentRecord]) -> DeploymentRecord | None:
    parsed = urlparse(base)
    if not parsed.hostname or not _loopback(parsed.hostname):
        return None
    for rec in records:
        if rec.port == parsed.port and (_loopback(rec.host) or rec.host in ("0.0.0.0", "::")):
            return rec
    return None


def record_url(record: DeploymentRecord) -> str:
    host = "127.0.0.1" if record.host in ("0.0.0.0", "::") else record.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{record.port}"


def resolve(args: list[str]) -> list[Target]:
    """NAME or URL arguments -> targets; no argument: every deployment servectl has a record of."""
    records = state.list_records()
    if not args:
        if not records:
            raise UserError(
                "no deployments to watch", "start one with `servectl up MODEL`, or name a URL: servectl top http://127.0.0.1:8000"
            )
        return [Target(r.name, record_url(r), r) for r in records]
    out = []
    for arg in args:
        if "://" in arg:
            base = _base(arg)
            rec = _record_for_url(base, records)
            out.append(Target(rec.name if rec else base, base, rec))
            continue
        entry = state.read(state.valid_name(arg))
        if not isinstance(entry, DeploymentRecord):
            known = ", ".join(r.name for r in records) or "none"
            raise UserError(
                f"no deployment named {arg!r}" + (" (its record is corrupt)" if entry else ""),
                f"deployments: {known}; or give a URL",
            )
        out.append(Target(entry.name, record_url(entry), entry))
    return out


def memory(target: Target, deadline_s: float = 5.0) -> tuple[int | None, str | None]:
    """(bytes, source) of the target's server, or (None, None) when servectl cannot prove it is its own."""
    rec = target.record
    if rec is None:
        return None, None
    if rec.runtime == "local" and rec.pid and runners.process_alive(rec.pid, rec.create_time):
        return tree_rss(rec.pid), "process tree RSS"
    if rec.runtime == "docker" and rec.container_id:
        container = rec.container_id
        try:
            return within(deadline_s, lambda _abort: _container_memory(container, deadline_s), "docker stats"), "container"
        except FetchError:
            return None, None
    return None, None


def _container_memory(container_id: str, timeout_s: float) -> int | None:
    """docker stats' figure: usage less the inactive page cache (cgroup v2 `inactive_file`, v1 `total_inactive_file`)."""
    import docker

    try:
        client = docker.from_env(timeout=max(1, int(timeout_s)))
        stats = client.containers.get(container_id).stats(stream=False, one_shot=True)
    except docker.errors.DockerException:
        return None
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if usage is None:
        return None
    extra = mem.get("stats") or {}
    return int(usage - extra.get("inactive_file", extra.get("total_inactive_file", 0)))
