"""Placement: may a model start (or wake) now, and which idle models must sleep or stop first. Pure.

Each model's footprint comes from its plan (servectl.plan.share): `awake` MiB while it serves or starts,
`asleep` MiB while it sleeps, nothing while it is stopped. A device (pool) holds a set of models while the sum
of their footprints stays within its budget. To make room:

1. idle models that can sleep are put to sleep, least recently used first;
2. if that is not enough, idle models are stopped, least recently used first (a sleeping one too), until it
   fits; a sleep of step 1 that these stops made unnecessary is dropped.

Never touched: a model serving a request (`busy`), one starting, waking or stopping, and the model being placed.
When even evicting every idle model leaves too little room the answer is "wait" (busy models will finish), or
"never" when the model does not fit the device at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

State = Literal["stopped", "starting", "ready", "sleeping", "waking", "stopping"]
# A model in these states holds its awake footprint; sleeping holds `asleep`; stopped nothing.
HOLDS_AWAKE = frozenset({"starting", "ready", "waking", "stopping"})


@dataclass(frozen=True)
class Slot:
    """One model as placement sees it."""

    name: str
    pool: str
    awake_mib: float
    asleep_mib: float
    state: State = "stopped"
    busy: int = 0  # requests it is serving now
    last_used: float = 0.0  # monotonic time of its last request (start time when never used)
    can_sleep: bool = False

    def held_mib(self) -> float:
        if self.state in HOLDS_AWAKE:
            return self.awake_mib
        return self.asleep_mib if self.state == "sleeping" else 0.0

    @property
    def idle(self) -> bool:
        return self.busy == 0 and self.state in ("ready", "sleeping")


@dataclass(frozen=True)
class Eviction:
    name: str
    action: Literal["sleep", "stop"]
    frees_mib: float


@dataclass(frozen=True)
class Decision:
    """What placing `name` takes."""

    name: str
    outcome: Literal["run", "wait", "never"]  # run: it fits now (after `evict`); wait: busy models hold the room
    evict: list[Eviction] = field(default_factory=list)
    need_mib: float = 0.0  # what starting / waking it adds
    used_mib: float = 0.0  # what the pool holds now
    budget_mib: float = 0.0
    reason: str = ""

    @property
    def fits(self) -> bool:
        return self.outcome == "run"


def used(slots: list[Slot], pool: str) -> float:
    return sum(s.held_mib() for s in slots if s.pool == pool)


def place(name: str, slots: list[Slot], budgets: dict[str, float]) -> Decision:
    """Decide how `name` can start (stopped) or wake (sleeping); a model already up needs nothing."""
    by_name = {s.name: s for s in slots}
    me = by_name[name]
    budget = budgets[me.pool]
    held = used(slots, me.pool)
    if me.state in HOLDS_AWAKE:
        return Decision(name, "run", used_mib=held, budget_mib=budget, reason=f"{name} is {me.state}")
    need = me.awake_mib - me.held_mib()
    if me.awake_mib > budget:
        return Decision(
            name,
            "never",
            need_mib=need,
            used_mib=held,
            budget_mib=budget,
            reason=f"{name} needs {me.awake_mib:,.0f} MiB, more than the {budget:,.0f} MiB the device may hold",
        )
    free = budget - held
    if need <= free:
        return Decision(
            name,
            "run",
            need_mib=need,
            used_mib=held,
            budget_mib=budget,
            reason=f"fits: {need:,.0f} MiB beside {held:,.0f} of {budget:,.0f} MiB in use",
        )
    idle = sorted((s for s in slots if s.pool == me.pool and s.name != name and s.idle), key=lambda s: (s.last_used, s.name))
    plan: dict[str, Eviction] = {}
    # 1. sleep idle awake models (LRU) while that is enough to matter
    for s in idle:
        if free >= need:
            break
        if s.state == "ready" and s.can_sleep and s.awake_mib > s.asleep_mib:
            plan[s.name] = Eviction(s.name, "sleep", s.awake_mib - s.asleep_mib)
            free += s.awake_mib - s.asleep_mib
    # 2. stop idle models (LRU), sleeping ones included, until it fits
    for s in idle:
        if free >= need:
            break
        already = plan[s.name].frees_mib if s.name in plan else 0.0
        plan[s.name] = Eviction(s.name, "stop", s.held_mib())
        free += s.held_mib() - already
    if free < need:
        busy = [s.name for s in slots if s.pool == me.pool and s.name != name and s.held_mib() > 0 and not s.idle]
        return Decision(
            name,
            "wait",
            need_mib=need,
            used_mib=held,
            budget_mib=budget,
            reason=f"{name} needs {need:,.0f} MiB; {budget - held:,.0f} MiB free and the idle models free "
            f"{sum(e.frees_mib for e in plan.values()):,.0f} more; busy: {', '.join(busy) or 'none'}",
        )
    order = {s.name: i for i, s in enumerate(idle)}  # reported least recently used first
    evictions = sorted(_only_needed(list(plan.values()), need - (budget - held)), key=lambda e: order[e.name])
    what = ", ".join(f"{e.action} {e.name}" for e in evictions)
    return Decision(
        name,
        "run",
        evictions,
        need_mib=need,
        used_mib=held,
        budget_mib=budget,
        reason=f"{need:,.0f} MiB needed, {budget - held:,.0f} MiB free: {what} (least recently used first)",
    )


def _only_needed(evictions: list[Eviction], short: float) -> list[Eviction]:
    """Drop sleeps (most recently used first) that the stops after them made unnecessary; the stops stay the
    least recently used idle models in order."""
    kept = list(evictions)
    for e in reversed(evictions):
        if e.action != "sleep":
            continue
        rest = [k for k in kept if k is not e]
        if sum(k.frees_mib for k in rest) >= short:
            kept = rest
    return kept


def after(slots: list[Slot], decision: Decision) -> list[Slot]:
    """The slots once a `run` decision is carried out (evictions done, the model starting or waking)."""
    actions = {e.name: e.action for e in decision.evict}
    out = []
    for s in slots:
        if s.name == decision.name:
            s = _with(s, state="waking" if s.state == "sleeping" else "starting")
        elif s.name in actions:
            s = _with(s, state="sleeping" if actions[s.name] == "sleep" else "stopped")
        out.append(s)
    return out


def _with(s: Slot, **kw) -> Slot:
    from dataclasses import replace

    return replace(s, **kw)
