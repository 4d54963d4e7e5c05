"""Bounded work: every input servectl reads has a size limit (or is streamed), every request a total deadline
and a body limit. Endless and huge inputs, devices, FIFOs, dripping and endless servers: exit 1 or 2 with one
line, never a hang or a memory blow-up. Each command runs as its own process under a hard address-space
limit (resource.RLIMIT_AS), so one that reads an endless input whole dies instead of reaching the OOM killer,
and a subprocess timeout that only a hang can reach (no test here measures time)."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port
from servectl.fsutil import read_log

SERVECTL = [sys.executable, "-m", "servectl"]
MEMORY_CAP = 1536 * 2**20  # far above what any command needs, far below an endless read
HANG = 300  # seconds: only a hang gets there


def run(tmp_path, *args, stdin=None, timeout=HANG) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    return subprocess.run(
        [*SERVECTL, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=stdin, preexec_fn=cap
    )


def one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


@pytest.fixture()
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "compare", "/dev/zero", "/dev/zero"],
        ["gpus", "--from", "/dev/zero"],
        ["gpus", "--from", "/dev/urandom"],
        ["diagnose", "/dev/zero"],
        ["calibrate", "tiny-cpu", "--gpu", "cpu", "--log", "/dev/zero"],
    ],
)
def test_endless_devices_are_bad_input_not_a_memory_blow_up(tmp_path, argv):
    one_line_error(run(tmp_path, *argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "compare", "{fifo}", "{fifo}"],
        ["gpus", "--from", "{fifo}"],
    ],
)
def test_a_fifo_nobody_writes_is_refused_not_waited_on(tmp_path, fifo, argv):
    assert "not a regular file" in one_line_error(run(tmp_path, *[a.format(fifo=fifo) for a in argv]))


def test_huge_and_binary_files_are_refused_with_one_line(tmp_path):
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.write(b'{"results": [' + b" " * (40 * 2**20) + b"]}")
    assert "larger than" in one_line_error(run(tmp_path, "bench", "compare", str(huge), str(huge)))
    binary = tmp_path / "gpus.csv"
    binary.write_bytes(b"name, memory.total [MiB]\n\x00\xff\xfe")
    assert "not text" in one_line_error(run(tmp_path, "gpus", "--from", str(binary)))
    nan = tmp_path / "nan.json"
    nan.write_text('{"results": [{"concurrency": 1, "request_throughput": NaN}]}')
    assert "not valid JSON" in one_line_error(run(tmp_path, "bench", "compare", str(nan), str(nan)))


def test_diagnose_streams_a_large_log_and_keeps_its_line_numbers(tmp_path):
    """The root error at the end of a log of tens of MiB is found with its real line number, and the command
    line at its start still names the model (servectl.fsutil.read_log keeps the head and the tail)."""
    source = Path(__file__).parent / "data" / "logs" / "diagnose" / "cpu-max-model-len-too-large.log"
    lines = source.read_bytes().splitlines(keepends=True)
    split = next(i for i, ln in enumerate(lines) if b"Traceback" in ln)
    filler = b"(APIServer pid=1) INFO 01-01 00:00:00 [loggers.py:1] Engine 000: Avg generation throughput: 1.0 tokens/s\n"
    count = (24 * 2**20) // len(filler)
    big = tmp_path / "big.log"
    with open(big, "wb") as out:
        out.writelines(lines[:split])
        out.write(filler * count)
        out.writelines(lines[split:])
    small = run(tmp_path, "diagnose", str(source), "--json")
    large = run(tmp_path, "diagnose", str(big), "--json")
    assert small.returncode == large.returncode == 0, large.stderr
    a, b = json.loads(small.stdout), json.loads(large.stdout)
    assert a["rule"] == b["rule"] and a["root_error"]["message"] == b["root_error"]["message"]
    assert b["root_error"]["line"] == a["root_error"]["line"] + count
    with open(big, "rb") as fh:  # stdin is streamed the same way
        piped = run(tmp_path, "diagnose", "-", "--json", stdin=fh)
    assert json.loads(piped.stdout)["root_error"] == b["root_error"]


def test_read_log_keeps_head_and_tail_of_one_endless_line():
    import io

    excerpt = read_log(io.BytesIO(b"x" * (20 * 2**20)), "one line")
    assert len(excerpt.head) <= 64 * 1024 and len(excerpt.tail) <= 64 * 1024 and excerpt.tail_first_line == 1


# --------------------------------------------------------------------------- slow and endless servers


class Server:
    """A raw TCP server answering every connection with `respond(conn)` (a thread each)."""

    def __init__(self, respond):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.respond = respond
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        try:
            conn.recv(65536)
            self.respond(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def drip_head(conn, stop) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 10_000:
        if stop.is_set():
            return
        conn.send(bytes([byte]))
        time.sleep(0.5)


def drip_body(conn, stop) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    while not stop.is_set():
        conn.send(b" ")
        time.sleep(0.5)


def endless_body(conn, stop) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    while not stop.is_set():
        conn.send(chunk)


@pytest.mark.parametrize("respond", [drip_head, drip_body, endless_body])
def test_check_ends_against_a_dripping_or_endless_server(tmp_path, respond):
    """`check --timeout 3`: a total deadline per request (a server sending one byte every half second never
    trips a read timeout), and a body limit (an endless answer is never held). Exit 1 or 2, one error line."""
    server = Server(respond)
    try:
        proc = run(tmp_path, "check", server.url, "--timeout", "3", "--json")
    finally:
        server.close()
    assert proc.returncode in (1, 2), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_proxy_discovery_and_bench_end_against_an_endless_model_list(tmp_path):
    server = Server(endless_body)
    try:
        proxy = run(tmp_path, "proxy", "--backend", server.url, "--listen", f"127.0.0.1:{free_port()}")
        bench = run(tmp_path, "bench", server.url, "--python", sys.executable, "--concurrency", "1")
    finally:
        server.close()
    for proc in (proxy, bench):
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr[-2000:]
