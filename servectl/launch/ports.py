"""Ports and URLs of a deployment: is a port free, a free one, who listens on it, the URL a client uses."""

from __future__ import annotations

import socket

from servectl.errors import UserError


def port_in_use(host: str, port: int) -> bool:
    """True when (host, port) cannot be bound. SO_REUSEADDR as uvicorn sets it, so TIME_WAIT is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"cannot resolve host {host!r}", "use an address such as 127.0.0.1") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError:
            return True
    return False


def held_by_another(port: int, pid: int) -> bool:
    """Whether a process outside `pid`'s tree listens on `port` (False when the sockets cannot be read)."""
    import psutil

    from servectl.verify.proctree import tree_pids

    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):
        return False
    ours = set(tree_pids(pid))
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid and c.pid not in ours for c in conns)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def base_url(host: str, port: int) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
