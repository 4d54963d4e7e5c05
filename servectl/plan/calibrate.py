"""What real vLLM starts measured, kept per (recipe, profile, vLLM version, host) and used by later plans.

Every `servectl up` that reaches vLLM's KV cache line adds a start, and so does `servectl calibrate --log` for a
log from elsewhere. Two things are learnt:
- the non-KV memory the model did not see (desktop, driver, allocator): predicted minus measured
  "Available KV cache memory" of starts that sized the cache by utilization; later plans subtract the mean;
- the block size vLLM chose ("Setting attention block size to N tokens", or the platform default when the line
  is absent) when it differs from the rules' — a host or version the rules do not cover (e.g. an SSM state dtype
  reset they miss); later plans use the measured one.
Stored under cache_dir()/calibration/<profile>.json as {recipe: {version: {host: entry}}}.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from servectl import paths
from servectl.catalog import versions as vv
from servectl.errors import UserError
from servectl.fsutil import JSON_LIMIT, read_json_capped, write_atomic
from servectl.plan.models import Plan
from servectl.plan.planner import MIB, Correction

if TYPE_CHECKING:  # vLLM's log is read by the commands that learn from a start, not by every plan
    from servectl.plan.vllm_log import LogFigures

KEEP = 10  # starts remembered per key (the mean of their overheads is applied)


@dataclass
class CalibrationRecord:
    recipe: str
    profile: str
    vllm_version: str | None
    host: str
    overhead_mib: float  # this start's (positive: vLLM had less KV memory than predicted)
    measured_kv_tokens: int | None
    predicted_kv_tokens: int
    measured_available_mib: float | None
    predicted_available_mib: float
    measured_block_size: int | None
    predicted_block_size: int
    source: str
    measured_terms_gib: dict[str, float] = field(default_factory=dict)  # vLLM's "Actual usage" terms, when logged
    starts: int = 0  # starts stored for this key, this one included
    overheads: list[float] = field(default_factory=list)


def host_id() -> str:
    """The machine a start ran on (calibration is per host)."""
    return os.uname().nodename or "localhost"  # gethostname(2) and uname(2) name the same node on Linux


def calibration_dir() -> Path:
    """$SERVECTL_CALIBRATION_DIR (a store shared by several machines, or a test's own), else the user cache."""
    override = os.environ.get("SERVECTL_CALIBRATION_DIR")
    return Path(override) if override else paths.cache_dir() / "calibration"


def _file(profile: str) -> Path:
    return calibration_dir() / f"{profile}.json"


def _version_key(version: str | None) -> str:
    if not version:
        return "unknown"
    try:
        return str(vv.parse(version))
    except ValueError:
        return version


def compare(
    plan: Plan, fig: LogFigures, source: str, host: str | None = None, default_block_size: int | None = None
) -> CalibrationRecord:
    """Pure: what a real start says about this plan (same recipe, profile, flags and version).

    `default_block_size` is the block size vLLM keeps when it logs no "Setting attention block size" line
    (the platform's: 128 on CPU, 16 on GPU, or --block-size)."""
    if fig.kv_cache_tokens is None and fig.available_kv_gib is None:
        raise UserError(
            f"{source} has no KV cache line (GPU/CPU KV cache size, Available KV cache memory)",
            "pass the log of a vLLM start that reached the KV cache allocation",
        )
    predicted_avail = plan.budget["kv_available"]
    overhead = 0.0
    measured_avail = fig.available_kv_gib * 1024 if fig.available_kv_gib is not None else None
    pinned = fig.kv_cache_memory_bytes is not None or plan.device == "CPU"
    if measured_avail is not None and not pinned:
        # the log rounds to 0.01 GiB (~10 MiB): below that there is nothing to correct
        diff = predicted_avail - measured_avail
        overhead = diff if abs(diff) > 10.24 else 0.0
    # no "Setting attention block size" line in a whole start (from the engine line to the KV size) means vLLM
    # kept the platform's block; an excerpt without the line says nothing
    whole = fig.kv_cache_tokens is not None and fig.vllm_version is not None
    block = fig.block_size if fig.block_size is not None else (default_block_size if whole else None)
    terms = {
        k: v
        for k, v in (
            ("weights", fig.weights_gib),
            ("activation", fig.peak_activation_gib),
            ("non_torch", fig.non_torch_gib),
            ("cudagraph", fig.cudagraph_gib),
            ("cudagraph_estimate", fig.cudagraph_estimate_gib),
        )
        if v is not None
    }
    if not {"weights", "activation", "non_torch"} <= terms.keys() or plan.device == "CPU":
        terms = {}
    return CalibrationRecord(
        plan.recipe,
        plan.profile,
        fig.vllm_version or plan.vllm_version,
        host or host_id(),
        round(overhead, 1),
        fig.kv_cache_tokens,
        plan.kv_cache_tokens_logged,
        measured_avail,
        round(predicted_avail, 1),
        block,
        plan.block_size,
        source,
        terms,
    )


def save(rec: CalibrationRecord) -> CalibrationRecord:
    """Add this start to its key; returns the record with the key's start count and overheads."""
    data = load_all(rec.profile)
    slot = data.setdefault(rec.recipe, {}).setdefault(_version_key(rec.vllm_version), {})
    prev = slot.get(rec.host, {})
    overheads = (list(prev.get("overheads", [])) + [rec.overhead_mib])[-KEEP:]
    rec.starts = int(prev.get("starts", 0)) + 1
    rec.overheads = overheads
    slot[rec.host] = asdict(rec)
    write_atomic(_file(rec.profile), json.dumps(data, indent=2, sort_keys=True) + "\n")
    return rec


def load_all(profile: str) -> dict:
    path = _file(profile)
    if not path.exists():
        return {}
    try:
        data = read_json_capped(path, JSON_LIMIT, f"calibration file {path}")
    except UserError as exc:
        raise UserError(f"{exc.message}", "delete it and calibrate again") from None
    if not isinstance(data, dict) or any(not isinstance(v, dict) or "overhead_mib" in v for v in data.values()):
        # an older layout ({recipe: record}): start afresh rather than misapply it
        return {}
    return data


def correction_for(recipe: str, profile: str, vllm_version: str | None, host: str | None = None) -> Correction | None:
    """What past starts of this key measured, or None when there were none."""
    rec = load_all(profile).get(recipe, {}).get(_version_key(vllm_version), {}).get(host or host_id())
    if not rec:
        return None
    overheads = [float(x) for x in rec.get("overheads", [])] or [float(rec.get("overhead_mib", 0.0))]
    block = rec.get("measured_block_size")
    terms = {k: float(v) * 1024 for k, v in (rec.get("measured_terms_gib") or {}).items()}
    rule = rec.get("predicted_block_size")
    return Correction(
        overhead_mib=round(sum(overheads) / len(overheads), 1),
        block_size=int(block) if block else None,
        rule_block_size=int(rule) if rule else None,
        starts=int(rec.get("starts", 1)),
        source=f"last: {rec.get('source', 'a start')}",
        weights_mib=terms.get("weights"),
        activation_mib=terms.get("activation"),
        non_torch_mib=terms.get("non_torch"),
        cudagraph_mib=terms.get("cudagraph"),
        cudagraph_estimate_mib=terms.get("cudagraph_estimate"),
    )


__all__ = ["CalibrationRecord", "compare", "save", "load_all", "correction_for", "calibration_dir", "host_id", "MIB"]
