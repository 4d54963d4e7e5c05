"""The multi-node layout (`--nodes N`) as vLLM flags. Pure.

Tensor parallel = the profile's GPUs per node, pipeline parallel = one stage per node, Ray as the distributed
executor (vLLM's multi-node layout, docs/serving/parallelism_scaling.md). Applied by `spec.resolve` before the
guards run, so a layout reached through --nodes meets the same guards as the same flags written by hand
(render's multi-node formats, `plan --nodes`, `up --runtime ray`).
"""

from __future__ import annotations

from servectl.catalog.gpu import GpuProfile
from servectl.errors import UserError
from servectl.vllmenv import args as va

MAX_NODES = 64


def layout(profile: GpuProfile, nodes: int) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel): every GPU of a node in one TP group, one PP stage per node."""
    if not 2 <= nodes <= MAX_NODES:
        raise UserError(f"--nodes {nodes} is not a multi-node layout", f"use 2 to {MAX_NODES} nodes")
    return profile.count, nodes


def with_layout(flags: list[va.Flag], tp: int, pp: int) -> list[va.Flag]:
    """The flags with the multi-node parallel sizes and the Ray executor, in place (data parallel dropped)."""
    flags = va.remove(flags, "--data-parallel-size")
    return va.merge(
        flags,
        [
            va.Flag("--tensor-parallel-size", str(tp)),
            va.Flag("--pipeline-parallel-size", str(pp)),
            va.Flag("--distributed-executor-backend", "ray"),
        ],
    )
