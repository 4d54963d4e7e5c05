"""`servectl bench`: run vLLM's own `vllm bench serve` with the fixed protocol and write one
shareable result file. Side effects live here (the subprocess, /v1/models, the host's facts);
the protocol, the result entries and comparisons are pure (servectl.bench.protocol).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from servectl import netio
import psutil

from servectl import __version__
from servectl.bench.protocol import FORMAT_VERSION, Protocol, bench_argv, level_result, shareable_flags
from servectl.errors import CheckFailed, UserError
from servectl.console import json_text
from servectl.fsutil import MIB, iter_lines, read_json_capped, write_atomic
from servectl.netio import json_of

RESULT_LIMIT = 16 * MIB  # a result file of many levels is tens of KiB
MAX_LOG_LINES = 200_000
_DRIVER = Path(__file__).with_name("_driver.py")


@dataclass
class Target:
    """What is benchmarked: a served endpoint, and what is known about how it was started."""

    url: str  # base URL, no /v1
    recipe: str | None = None
    profile: str | None = None
    argv: list[str] | None = None  # the server's command, when known (a deployment record or a local process)
    model: str | None = None  # served name; default: the first /v1/models lists
    tokenizer: str | None = None  # local tokenizer dir or repo id; default: the model's root
    local: bool = False


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_facts(detection=None) -> dict[str, Any]:
    """CPU model, cores, memory, GPUs (name, memory): no hostname, no user, no paths."""
    if detection is None:
        from servectl.hardware.detect import detect

        detection = detect()
    return {
        "cpu": cpu_model(),
        "cpu_cores": psutil.cpu_count(logical=True),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.system(),
        "gpus": [
            {"name": g.name, "memory_gib": round(g.memory_total_mib / 1024, 1) if g.memory_total_mib else None}
            for g in detection.gpus
        ],
    }


def _served(http: httpx.Client, url: str, model: str | None) -> tuple[str, str | None]:
    try:
        listing = json_of(http.get(url + "/v1/models"))
    except httpx.TransportError as exc:
        raise UserError(
            f"cannot reach {url}: {exc.__class__.__name__}", "is the server running? `servectl status` lists deployments"
        ) from None
    except (httpx.HTTPError, ValueError):
        raise CheckFailed(f"{url}/v1/models answered no JSON model list", "is this a vLLM server?") from None
    data = listing.get("data") if isinstance(listing, dict) else None
    data = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)] if isinstance(data, list) else []
    if not data:
        raise CheckFailed(f"{url}/v1/models lists no model", "is this a vLLM server?")
    entry = next((m for m in data if m["id"] == model), None) if model else data[0]
    if entry is None:
        raise UserError(
            f"{url} does not serve {model!r} (it serves {', '.join(m['id'] for m in data)})", "drop --model or name one it serves"
        )
    return entry["id"], entry.get("root")


def run_bench(
    target: Target, protocol: Protocol, *, python: str | os.PathLike | None = None, on_line: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Run every level with vLLM's benchmark: (the result document (docs: reference/json-output.md, bench), vLLM's output lines)."""
    from servectl.vllmenv.location import find_vllm_python

    interpreter = find_vllm_python(python, any_env=True)
    url = target.url.rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    with netio.client(30) as http:
        model, root = _served(http, url, target.model)
        try:
            version = json_of(http.get(url + "/version")).get("version")
        except (httpx.HTTPError, ValueError, AttributeError):
            version = None
        version = version if isinstance(version, str) else None
        root = root if isinstance(root, str) else None
    tokenizer = target.tokenizer or root or model
    work = Path(tempfile.mkdtemp(prefix="servectl-bench-"))
    runs = [bench_argv(protocol, level, url, model, tokenizer, str(work)) for level in protocol.concurrency]
    (work / "runs.json").write_text(json.dumps(runs))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log: list[str] = []
    started = time.time()
    proc = subprocess.Popen(
        [str(interpreter), str(_DRIVER), str(work / "runs.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in iter_lines(proc.stdout):
            if len(log) < MAX_LOG_LINES:  # what vLLM printed is kept, within bounds
                log.append(line)
            if on_line:
                on_line(line)
        proc.wait(timeout=6 * 3600)  # its output has ended; a driver that then hangs is killed
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        (work / "vllm-bench.log").write_text("\n".join(log) + "\n")
        tail = next((line for line in reversed(log) if line.strip()), "no output")
        raise CheckFailed(
            f"vllm bench serve failed (exit {proc.returncode}): {tail[:300]}", f"its whole output is in {work / 'vllm-bench.log'}"
        )
    results = [level_result(level, read_json_capped(work / f"c{level}.json")) for level in protocol.concurrency]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "format": FORMAT_VERSION,
        "servectl_version": __version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "recipe": target.recipe,
        "profile": target.profile,
        "model": model,
        "vllm_version": version,
        "flags": shareable_flags(target.argv) if target.argv else None,
        "host": {**host_facts(), "server_on_this_host": target.local},
        "protocol": protocol.model_dump(),
        "results": results,
    }, log


def write_result(path: Path, doc: dict[str, Any], log: list[str]) -> None:
    """The result file, and vLLM's own printed output beside it (PATH with .vllm-bench.log)."""
    write_atomic(path.with_suffix(".vllm-bench.log"), "\n".join(log) + "\n")
    write_atomic(path, json_text(doc) + "\n")


def read_result(path: Path) -> dict[str, Any]:
    """A result file, checked enough to compare: UserError (one line) otherwise."""
    if not Path(path).exists():
        raise UserError(f"no such result file: {path}", "give files written by `servectl bench -o`")
    try:
        doc = read_json_capped(path, RESULT_LIMIT, f"result file {path}")
    except UserError as exc:
        raise UserError(exc.message, "give files written by `servectl bench -o`") from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list) or not all(
        isinstance(r, dict) and isinstance(r.get("concurrency"), int) and not isinstance(r.get("concurrency"), bool)
        for r in results
    ):
        raise UserError(f"{path} has no `results` list of concurrency levels", "give files written by `servectl bench -o`")
    return doc


def target_for(name_or_url: str, model: str | None = None, tokenizer: str | None = None) -> Target:
    """A deployment name (servectl's records) or a URL. A local URL picks up the record or the
    process listening on its port, for recipe, profile and flags."""
    from servectl.launch import state
    from servectl.launch.ports import base_url
    from servectl.verify.server_facts import listening_process

    if "://" not in name_or_url:
        rec = state.load(name_or_url)
        if rec is None:
            names = [r.name for r in state.list_records()]
            raise UserError(
                f"no deployment named {name_or_url!r}" + (f" (running: {', '.join(names)})" if names else ""),
                "give a URL such as http://127.0.0.1:8000 or a name `servectl status` lists",
            )
        return Target(
            url=base_url(rec.host, rec.port),
            recipe=rec.recipe,
            profile=rec.profile,
            argv=rec.argv,
            model=model or rec.served_model_name,
            tokenizer=tokenizer or rec.model,
            local=rec.runtime == "local",
        )
    url = name_or_url.rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    port = urlparse(url).port
    proc = listening_process(url)  # one scan of the machine's sockets serves every record
    for rec in state.list_records():
        if rec.port == port and proc is not None:
            return Target(
                url=url,
                recipe=rec.recipe,
                profile=rec.profile,
                argv=rec.argv,
                model=model or rec.served_model_name,
                tokenizer=tokenizer or rec.model,
                local=True,
            )
    argv = None
    if proc is not None:
        try:
            argv = proc.cmdline()
        except psutil.Error:
            argv = None
    return Target(url=url, argv=argv, model=model, tokenizer=tokenizer, local=proc is not None)
