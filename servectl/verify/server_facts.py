"""What a live vLLM server is and promises: figures from its own endpoints, plus its flags and
process tree when it runs on this machine.

/metrics gives the KV cache's capacity (`vllm:cache_config_info`: kv_cache_size_tokens,
num_gpu_blocks, block_size and, from 0.32, kv_cache_max_concurrency), /v1/models the
max_model_len. The concurrency the server promises (max_num_seqs) is in none of them: it is read
from the flags of the process listening on the port (or stated with --max-num-seqs), else vLLM's
default for the platform.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx
import psutil

from servectl.catalog import metrics as metrics_table
from servectl.vllmenv.args import parse_args as parse_flags

# vllm/engine/arg_utils.py get_batch_defaults (read in the CPU build's wheel), usage context OPENAI_API_SERVER:
# CPU 128 x world size; GPUs with >= 70 GiB (not A100) 1024; >= 160 GiB 1024; others 256.
# Only the memory is known here (the GPU's name is not), so the A100 exception is not applied.
CPU_DEFAULT_MAX_NUM_SEQS = 128


def gpu_default_max_num_seqs(memory_gib: float) -> int:
    return 1024 if memory_gib >= 70 else 256


# the names of every release (servectl.catalog.metrics); a counter's sample carries `_total`
PREEMPTION_SAMPLES = (*metrics_table.sample_names("preemptions"), *metrics_table.names("preemptions"))
KV_USAGE_SAMPLES = metrics_table.names("kv_cache_usage")


# Counters vLLM keeps exactly (vllm/v1/metrics/loggers.py): what it served, summed over engines. The
# request_* histograms are observed once per finished request with its own token counts.
COUNTER_SAMPLES = {
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:request_prompt_tokens_sum": "finished_prompt_tokens",
    "vllm:request_generation_tokens_sum": "finished_generation_tokens",
    "vllm:request_prompt_tokens_count": "finished_requests",
}


def read_metrics(text: str) -> dict[str, float | dict]:
    """The figures the gates use, summed over engines; cache_config_info's labels under 'cache_config'.
    Counters vLLM lacks (an older release, not vLLM) are absent from the result, not zero."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict = {"preemptions": 0.0, "running": 0.0, "waiting": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in COUNTER_SAMPLES:
                key = COUNTER_SAMPLES[s.name]
                out[key] = out.get(key, 0.0) + s.value
            elif s.name in PREEMPTION_SAMPLES:
                out["preemptions"] += s.value
            elif s.name in KV_USAGE_SAMPLES:
                out["kv_usage"] = max(out.get("kv_usage", 0.0), s.value)
            elif s.name == "vllm:num_requests_running":
                out["running"] += s.value
            elif s.name == "vllm:num_requests_waiting":
                out["waiting"] += s.value
            elif s.name.startswith("vllm:cache_config_info"):
                out["cache_config"] = dict(s.labels)
    return out


def _float(value) -> float | None:
    """A finite number from a label or flag value, else None (a server's text is not trusted)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


@dataclass
class ServerFacts:
    url: str
    model: str
    max_model_len: int | None = None
    root: str | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None  # vLLM's own: requests of max_model_len its KV cache holds
    block_size: int | None = None
    num_blocks: int | None = None
    kv_cache_memory_bytes: int | None = None
    gpu_memory_utilization: float | None = None
    pid: int | None = None  # the API server process when it runs here
    flags: dict[str, str | None] = field(default_factory=dict)  # its vLLM flags, when read
    max_num_seqs: int | None = None
    max_num_seqs_source: str = "unknown"

    @property
    def local(self) -> bool:
        return self.pid is not None

    def flag(self, name: str) -> str | None:
        return self.flags.get(name)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def listening_process(url: str) -> psutil.Process | None:
    """The vLLM process listening on the URL's port on this machine, or None (remote, container, not vLLM)."""
    parsed = urlparse(url)
    if not parsed.hostname or not _is_loopback(parsed.hostname):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            try:
                proc = psutil.Process(c.pid)
                if any("vllm" in part for part in proc.cmdline()):
                    return proc
            except psutil.Error:
                return None
    return None


def vllm_flags(cmdline: list[str]) -> dict[str, str | None]:
    """--flag -> value from a `vllm serve MODEL ...` or `python -m vllm.entrypoints... ...` command line
    (names canonical, as vLLM's parser reads them: --max_num_seqs, -tp)."""
    anchor = next((i for i, tok in enumerate(cmdline) if tok == "serve" or tok.startswith("vllm.entrypoints")), 0)
    start = next((i for i, tok in enumerate(cmdline) if i > anchor and tok.startswith("-")), len(cmdline))
    try:
        return {f.name.split("=")[0]: f.value for f in parse_flags(cmdline[start:])}
    except ValueError:
        return {}


def discover(
    http: httpx.Client,
    base: str,
    model: str,
    max_num_seqs: int | None = None,
    gpu_memory_gib: Callable[[], float | None] | None = None,
) -> ServerFacts:
    """Read the server's figures; `max_num_seqs` states the promise when its flags cannot be read here.
    `gpu_memory_gib` is called only for a local server with no max_num_seqs given: probing GPUs is slow."""
    from servectl.netio import json_of

    facts = ServerFacts(url=base, model=model)
    listing = json_of(http.get(base + "/v1/models"))
    for entry in (listing.get("data") if isinstance(listing, dict) else None) or []:
        if isinstance(entry, dict) and entry.get("id") == model:
            mml, root = entry.get("max_model_len"), entry.get("root")
            facts.max_model_len = mml if isinstance(mml, int) and not isinstance(mml, bool) and mml > 0 else None
            facts.root = root if isinstance(root, str) else None
    metrics = read_metrics(http.get(base + "/metrics").text)
    cc = metrics.get("cache_config")
    cc = cc if isinstance(cc, dict) else {}  # cache_config_info's labels (the other keys are figures)
    facts.kv_cache_tokens = _int(cc.get("kv_cache_size_tokens"))
    facts.block_size = _int(cc.get("block_size"))
    facts.num_blocks = _int(cc.get("num_gpu_blocks"))
    facts.kv_cache_memory_bytes = _int(cc.get("kv_cache_memory_bytes"))
    facts.gpu_memory_utilization = _float(cc.get("gpu_memory_utilization"))
    # 0.32 labels it (the figure of the start-up line "Maximum concurrency for N tokens per request");
    # older releases: tokens / max_model_len, as vllm/v1/core/kv_cache_utils.py computes it for one group
    facts.max_concurrency = _float(cc.get("kv_cache_max_concurrency"))
    if facts.max_concurrency is None and facts.kv_cache_tokens and facts.max_model_len:
        facts.max_concurrency = facts.kv_cache_tokens / facts.max_model_len
    proc = listening_process(base)
    if proc is not None:
        facts.pid = proc.pid
        try:
            facts.flags = vllm_flags(proc.cmdline())
        except psutil.Error:
            pass
    if max_num_seqs is not None:
        facts.max_num_seqs, facts.max_num_seqs_source = max_num_seqs, "stated with check --max-num-seqs"
    elif facts.flag("--max-num-seqs"):
        facts.max_num_seqs, facts.max_num_seqs_source = _int(facts.flag("--max-num-seqs")), "the server's --max-num-seqs"
    elif facts.local:
        memory_gib = gpu_memory_gib() if gpu_memory_gib else None
        if memory_gib is None:
            facts.max_num_seqs = CPU_DEFAULT_MAX_NUM_SEQS
        else:
            facts.max_num_seqs = gpu_default_max_num_seqs(memory_gib)
        facts.max_num_seqs_source = "vLLM's default: no --max-num-seqs given"
    return facts
