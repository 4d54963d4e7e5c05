"""`servectl serve FLEET.yaml --plan`: the placement the front door would make, and why, without starting
anything. Pure over a sized fleet (servectl.fleet.sizing.load with serving=False).

Reported: each device's budget; each model's footprint from its plan (awake, asleep), KV cache, the flags
that pin it and why it has that size; what happens at start (preloads in file order, each only where it fits
beside those already up); what a first request for each other model would do from there; and whether all the
models fit together.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from servectl.fleet import placement
from servectl.fleet.sizing import Fleet

MIB = 2**20


def initial_slots(fleet: Fleet) -> list[placement.Slot]:
    return [
        placement.Slot(m.name, m.pool, m.share.awake_mib, m.share.asleep_mib, can_sleep=m.sleep) for m in fleet.members.values()
    ]


def report(fleet: Fleet) -> dict[str, Any]:
    budgets = {pool: b.budget_mib for pool, b in fleet.budgets.items()}
    slots = initial_slots(fleet)
    preload = []
    clock = 0.0
    for m in fleet.members.values():
        if not m.preload:
            continue
        d = placement.place(m.name, slots, budgets)
        ok = d.fits and not d.evict
        if ok:
            clock += 1
            slots = [replace(s, state="ready", last_used=clock) if s.name == m.name else s for s in slots]
        preload.append(
            {
                "model": m.name,
                "starts": ok,
                "used_mib": round(placement.used(slots, m.pool), 1),
                "reason": d.reason
                if ok
                else (
                    f"not preloaded: {d.reason}"
                    if not d.fits
                    else "not preloaded: it would evict " + ", ".join(e.name for e in d.evict)
                ),
            }
        )
    on_request = []
    for m in fleet.members.values():
        if any(p["model"] == m.name and p["starts"] for p in preload):
            continue
        d = placement.place(m.name, slots, budgets)
        on_request.append(
            {
                "model": m.name,
                "outcome": d.outcome,
                "evict": [{"model": e.name, "action": e.action, "frees_mib": round(e.frees_mib, 1)} for e in d.evict],
                "reason": d.reason,
            }
        )
    together = {}
    for pool, budget in budgets.items():
        total = sum(m.share.awake_mib for m in fleet.members.values() if m.pool == pool)
        together[pool] = {"awake_mib": round(total, 1), "budget_mib": round(budget, 1), "fits": total <= budget}
    return {
        "fleet": fleet.name,
        "listen": f"{fleet.host}:{fleet.port}",
        "pools": [
            {"pool": pool, "total_mib": round(b.total_mib, 1), "budget_mib": round(b.budget_mib, 1), "reason": b.reason}
            for pool, b in fleet.budgets.items()
        ],
        "models": [
            {
                "name": m.name,
                "record": m.record,
                "recipe": m.spec.recipe,
                "model": m.spec.model,
                "profile": m.pool,
                "awake_mib": round(m.share.awake_mib, 1),
                "asleep_mib": round(m.share.asleep_mib, 1) if m.sleep else None,
                "kv_cache_bytes": m.share.kv_cache_bytes,
                "kv_cache_tokens": m.share.plan.kv_cache_tokens_logged,
                "max_model_len": m.share.plan.max_model_len,
                "max_concurrency": round(m.share.plan.max_concurrency, 2),
                "vllm_version": m.share.plan.vllm_version,
                "sizing": m.share.sizing,
                "flags": m.share.flags + (["--enable-sleep-mode"] if m.sleep else []),
                "sleep": m.sleep,
                "ttl_s": m.ttl_s,
                "preload": m.preload,
                "aliases": list(m.aliases),
                "presets": sorted(m.presets),
            }
            for m in fleet.members.values()
        ],
        "preload": preload,
        "on_request": on_request,
        "together": together,
        "notes": fleet.notes,
    }


def lines(data: dict[str, Any]) -> list[str]:
    """The report as text for people."""
    out = [f"fleet {data['fleet']} on {data['listen']}"]
    for p in data["pools"]:
        out.append(f"device {p['pool']}: the models may hold {p['budget_mib']:,.0f} MiB together ({p['reason']})")
    out.append("")
    for m in data["models"]:
        asleep = f", asleep {m['asleep_mib']:,.0f} MiB" if m["asleep_mib"] is not None else ", no sleep mode"
        ttl = f"ttl {m['ttl_s']:.0f} s" if m["ttl_s"] else "no ttl"
        out.append(
            f"{m['name']}: {m['recipe']} on {m['profile']}, {m['awake_mib']:,.0f} MiB awake{asleep}; "
            f"KV cache {m['kv_cache_bytes'] / MIB:,.0f} MiB = {m['kv_cache_tokens']:,} tokens "
            f"({m['max_concurrency']:g} x {m['max_model_len']:,}); {ttl}{', preloaded' if m['preload'] else ''}"
        )
        out.append(f"  sized: {m['sizing']}")
        out.append(f"  pinned with: {' '.join(m['flags'])}")
    out.append("")
    for p in data["preload"]:
        out.append(f"at start: {p['model']}: " + (f"starts ({p['reason']})" if p["starts"] else p["reason"]))
    if not data["preload"]:
        out.append("at start: nothing preloaded")
    for r in data["on_request"]:
        verb = {"run": "starts", "wait": "waits", "never": "cannot start"}[r["outcome"]]
        out.append(f"first request for {r['model']}: {verb} ({r['reason']})")
    for pool, t in data["together"].items():
        out.append(
            f"all models of {pool} together: {t['awake_mib']:,.0f} of {t['budget_mib']:,.0f} MiB: "
            + ("they can all run at once" if t["fits"] else "they cannot all run at once; the front door swaps them")
        )
    out += [f"note: {n}" for n in data["notes"]]
    return out
