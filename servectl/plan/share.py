"""A model's share of a device when several vLLM servers run on it (servectl serve FLEET.yaml), and the
device's budget for all of them. Pure: the release, host and weights come in as arguments.

Each server is pinned to the memory its plan predicts, so the set never grows past what was placed:

- `--kv-cache-memory-bytes` (vLLM >= 0.10.2) fixes the KV cache: vLLM skips its profiling budget and
  allocates exactly that (vllm/v1/worker/gpu_worker.py determine_available_memory, 0.32 :649-673). On a
  GPU the server still refuses to start unless the device has `--gpu-memory-utilization` x total free
  (vllm/v1/worker/utils.py request_memory, 0.32 :716-771), so the utilization is set to the share the
  plan says this server needs beside its CUDA context: a start that would not fit fails at once instead
  of pushing a neighbour out of memory.
- Releases without it take the utilization share that gives the same KV blocks (planner.required_util),
  so the KV budget, and with it the footprint, is the plan's.

How big the KV cache is: an explicit `--kv-cache-memory-bytes` in the flags; else `context` tokens for
`concurrency` requests (planner.plan_for_target); else what the recipe's settings give on this profile
alone (its utilization preset), pinned in bytes.

Asleep (vLLM's sleep mode, level 1) a server offloads its weights to host memory and discards its KV
cache (gpu_worker.py sleep: CuMemAllocator.sleep(offload_tags=("weights",))): what stays on the device is
its context, non-torch memory, CUDA graphs and the sampler's reserve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Unpack

from servectl.catalog import versions as vv
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError
from servectl.plan import planner
from servectl.plan.models import Plan
from servectl.plan.service import split_memory_flags
from servectl.vllmenv import args as va

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class Share:
    """One server of a fleet, sized: the plan, the memory flags that realise it, and its footprint."""

    plan: Plan
    flags: list[str]  # the memory flags to add to the server's command line (they replace the same flags)
    awake_mib: float  # device memory while it serves (plan.total_vram_mib)
    asleep_mib: float  # device memory while it sleeps (awake - weights - KV budget)
    kv_cache_bytes: int  # the KV cache the plan gives it
    sizing: str  # why the KV cache has this size


@dataclass(frozen=True)
class Budget:
    """What the models of one device may hold together."""

    total_mib: float  # the device as vLLM sees it (per GPU of the profile)
    budget_mib: float  # what the fleet's servers may hold together
    reason: str


def budget(profile: GpuProfile, preset: str | None = None, limit_bytes: int | None = None) -> Budget:
    """The device's memory times the profile's utilization preset (the headroom the profile keeps for a display or
    the OS), on unified memory no more than total minus the OS headroom, capped by `limit_bytes`."""
    name = preset or profile.default_preset
    util = profile.presets[name].gpu_memory_utilization
    total_gib = profile.memory_gib if profile.unified_memory else profile.total_memory_gib
    total = total_gib * GIB
    amount = util * total
    reason = f"{util:g} x {total_gib:g} GiB (profile {profile.name}, preset {name})"
    if profile.unified_memory and total - profile.os_headroom_gib * GIB < amount:
        amount = total - profile.os_headroom_gib * GIB
        reason = f"{total_gib:g} GiB - {profile.os_headroom_gib:g} GiB OS headroom (profile {profile.name}, unified memory)"
    if limit_bytes is not None and limit_bytes < amount:
        amount = float(limit_bytes)
        reason = f"memory_limit {limit_bytes / MIB:.0f} MiB (below {reason})"
    return Budget(total / MIB, amount / MIB, reason)


def has_kv_bytes_flag(vllm_version: str) -> bool:
    return vv.has("kv_cache_memory_bytes", vllm_version)


def _sized_settings(
    recipe: ModelRecipe,
    profile: GpuProfile,
    s: planner.Settings,
    context: int | None,
    concurrency: int,
    budget_mib: float | None,
    **kw: Unpack[planner.Inputs],
) -> tuple[planner.Settings, str]:
    """Settings with the KV cache fixed in bytes, and why it has that size."""
    if s.kv_cache_memory_bytes is not None:
        return s, f"--kv-cache-memory-bytes {s.kv_cache_memory_bytes / MIB:.0f} MiB (given)"
    if s.cpu_kvcache_space_gib is not None and profile.vendor == "cpu":
        return replace(
            s, kv_cache_memory_bytes=s.cpu_kvcache_space_gib * GIB
        ), f"VLLM_CPU_KVCACHE_SPACE={s.cpu_kvcache_space_gib} GiB (given)"
    if context is not None:
        sized, notes = planner.plan_for_target(
            recipe,
            profile,
            replace(s, kv_cache_memory_bytes=0),
            context,
            concurrency,
            ceiling_util=s.gpu_memory_utilization,
            **kw,
        )
        return sized, f"{concurrency} x {context:,} tokens: " + "; ".join(notes)
    # Neither: the whole budget when it runs alone (what `servectl up` gives it on this device), pinned in bytes.
    alone = planner.predict(recipe, profile, s, **kw)
    rest = alone.total_vram_mib - alone.budget["kv_available"]
    kv_mib = (budget_mib if budget_mib is not None else alone.total_vram_mib) - rest
    if kv_mib <= 0:
        raise UserError(
            f"{recipe.name}'s weights and overheads ({rest:,.0f} MiB) leave no KV cache in {budget_mib:,.0f} MiB",
            "raise memory_limit, or run it on a larger profile",
        )
    return replace(s, kv_cache_memory_bytes=int(kv_mib * MIB) // MIB * MIB), (
        f"no `context` or --kv-cache-memory-bytes: the rest of the device's budget beside its weights and overheads "
        f"({rest:,.0f} MiB), so alone it fills the device; set `context` (and `concurrency`) to share it"
    )


def share_for(
    recipe: ModelRecipe,
    profile: GpuProfile,
    vllm_args: list[str],
    env: dict[str, str],
    *,
    vllm_version: str,
    host=None,
    correction=None,
    weights_gib: float | None = None,
    context: int | None = None,
    concurrency: int = 1,
    budget_mib: float | None = None,
) -> Share:
    """Plan one fleet server and pin it to its plan (see the module doc). Raises planner.VllmRefuses where vLLM
    would refuse to start, UserError for a context that does not fit."""
    mem, _ = split_memory_flags(vllm_args)
    s = planner.settings_from_flags(va.parse_args(mem), env)
    kw: planner.Inputs = {"vllm_version": vllm_version, "host": host, "correction": correction, "weights_gib": weights_gib}
    sized, why = _sized_settings(recipe, profile, s, context, concurrency, budget_mib, **kw)
    cpu = profile.vendor == "cpu"
    total = (profile.memory_gib if profile.unified_memory else profile.total_memory_gib) * GIB
    if has_kv_bytes_flag(vllm_version) or cpu:
        plan = planner.predict(recipe, profile, sized, **kw)
        kv = sized.kv_cache_memory_bytes
        assert kv is not None  # _sized_settings fixed it
        flags = ["--kv-cache-memory-bytes", f"{kv // MIB}M" if kv % MIB == 0 else str(kv)]
        if not cpu:  # vLLM's free-memory check at start: what this server allocates beside its CUDA context
            need = plan.total_vram_mib * MIB - plan.budget["context"] * MIB
            flags += ["--gpu-memory-utilization", f"{min(1.0, math.ceil(need / total * 1000) / 1000):g}"]
    else:  # vLLM < 0.10.2: the utilization that gives the same KV blocks
        blocks = planner.predict(recipe, profile, sized, **kw).num_blocks
        util = planner.required_util(recipe, profile, sized, blocks, **kw)
        sized = replace(sized, gpu_memory_utilization=util, kv_cache_memory_bytes=None)
        plan = planner.predict(recipe, profile, sized, **kw)
        flags = ["--gpu-memory-utilization", f"{util:g}"]
        why += f"; vLLM {vllm_version} has no --kv-cache-memory-bytes: utilization {util:g} gives those blocks"
    if context is not None:  # the length the KV cache was sized for
        flags += ["--max-model-len", str(context)]
    plan = replace(plan, flags=flags)
    asleep = plan.total_vram_mib - plan.budget["weights"] - plan.budget["kv_available"]
    return Share(
        plan=plan,
        flags=flags,
        awake_mib=plan.total_vram_mib,
        asleep_mib=max(0.0, asleep),
        kv_cache_bytes=int(plan.budget["kv_allocated"] * MIB),
        sizing=why,
    )
