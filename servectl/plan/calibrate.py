"""Per-machine corrections from real vLLM starts, stored under cache_dir()/calibration/<profile>.json.

A start's log says how much memory vLLM left for the KV cache ("Available KV cache memory", or the
KV cache size line when the bytes were pinned). The difference to the plan's prediction for the same
flags is non-KV memory the model did not see (desktop, driver, allocator); later plans subtract it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from servectl import paths
from servectl.errors import UserError
from servectl.fsutil import write_atomic
from servectl.plan.planner import MIB, Correction
from servectl.plan.models import Plan
from servectl.plan.vllm_log import LogFigures


@dataclass
class CalibrationRecord:
    recipe: str
    profile: str
    vllm_version: str | None
    overhead_mib: float  # applied by later plans (positive: vLLM had less KV memory than predicted)
    measured_kv_tokens: int | None
    predicted_kv_tokens: int
    measured_available_mib: float | None
    predicted_available_mib: float
    source: str


def calibration_dir() -> Path:
    return paths.cache_dir() / "calibration"


def _file(profile: str) -> Path:
    return calibration_dir() / f"{profile}.json"


def compare(plan: Plan, fig: LogFigures, source: str) -> CalibrationRecord:
    """Pure: the correction a real start implies for this plan's recipe and profile."""
    if fig.kv_cache_tokens is None and fig.available_kv_gib is None:
        raise UserError(f"{source} has no KV cache line (GPU/CPU KV cache size, Available KV cache memory)",
                        "pass the log of a vLLM start that reached the KV cache allocation")
    predicted_avail = plan.budget["kv_available"]
    overhead = 0.0
    measured_avail = fig.available_kv_gib * 1024 if fig.available_kv_gib is not None else None
    pinned = fig.kv_cache_memory_bytes is not None or plan.device == "CPU"
    if measured_avail is not None and not pinned:
        # the log rounds to 0.01 GiB (~10 MiB): below that there is nothing to correct
        diff = predicted_avail - measured_avail
        overhead = diff if abs(diff) > 10.24 else 0.0
    return CalibrationRecord(plan.recipe, plan.profile, fig.vllm_version, round(overhead, 1), fig.kv_cache_tokens,
                             plan.kv_cache_tokens_logged, measured_avail, round(predicted_avail, 1), source)


def save(rec: CalibrationRecord) -> Path:
    path = _file(rec.profile)
    data = load_all(rec.profile)
    data[rec.recipe] = asdict(rec)
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def load_all(profile: str) -> dict:
    path = _file(profile)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"calibration file {path} is unreadable: {exc}", "delete it and calibrate again") from None


def correction_for(recipe: str, profile: str) -> Correction | None:
    rec = load_all(profile).get(recipe)
    if not rec or not rec.get("overhead_mib"):
        return None
    return Correction(overhead_mib=float(rec["overhead_mib"]), source=rec.get("source", "calibration"))


__all__ = ["CalibrationRecord", "compare", "save", "load_all", "correction_for", "calibration_dir", "MIB"]
