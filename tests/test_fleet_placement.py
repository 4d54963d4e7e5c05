"""Placement (servectl.fleet.placement) is a pure function: properties over random fleets (hypothesis).

Whatever the models, states, budgets and clocks: a model is started only when the device holds it beside the
others (after the evictions), never past the budget; only idle models are evicted (never one serving a
request, starting, waking or stopping, nor the model being placed); stops go to the least recently used idle
models in order; every sleep is needed; "wait" only when even stopping every idle model would not make room.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servectl.fleet.placement import Slot, after, place, used

STATES = ["stopped", "starting", "ready", "sleeping", "waking", "stopping"]


@st.composite
def fleets(draw):
    n = draw(st.integers(1, 7))
    pools = draw(st.sampled_from([["gpu"], ["gpu", "cpu"]]))
    slots = []
    for i in range(n):
        awake = draw(st.floats(1, 5000, allow_nan=False))
        slots.append(
            Slot(
                name=f"m{i}",
                pool=draw(st.sampled_from(pools)),
                awake_mib=awake,
                asleep_mib=draw(st.floats(0, awake, allow_nan=False)),
                state=draw(st.sampled_from(STATES)),
                busy=draw(st.sampled_from([0, 0, 0, 1, 3])),
                last_used=draw(st.floats(0, 1000, allow_nan=False)),
                can_sleep=draw(st.booleans()),
            )
        )
    target = draw(st.integers(0, n - 1))
    me = slots[target]
    slots[target] = Slot(
        me.name,
        me.pool,
        me.awake_mib,
        me.asleep_mib,
        draw(st.sampled_from(["stopped", "sleeping"])),
        0,
        me.last_used,
        me.can_sleep,
    )
    budgets = {p: draw(st.floats(1, 12000, allow_nan=False)) for p in pools}
    # what runs already fits (the front door never got past its budget before)
    for p in pools:
        budgets[p] = max(budgets[p], used(slots, p))
    return slots, me.name, budgets


@settings(max_examples=400, deadline=None)
@given(fleets())
def test_a_started_model_never_overcommits_the_device(case):
    slots, name, budgets = case
    d = place(name, slots, budgets)
    me = next(s for s in slots if s.name == name)
    if d.outcome == "run":
        placed = after(slots, d)
        assert used(placed, me.pool) <= budgets[me.pool] + 1e-6
        for pool in budgets:  # other devices are untouched
            if pool != me.pool:
                assert used(placed, pool) == used(slots, pool)
    elif d.outcome == "never":
        assert me.awake_mib > budgets[me.pool]
    else:  # wait: stopping every idle model of the device would still not make room
        idle = sum(s.held_mib() for s in slots if s.pool == me.pool and s.name != name and s.idle)
        assert budgets[me.pool] - used(slots, me.pool) + idle < me.awake_mib - me.held_mib()
        assert not d.evict


@settings(max_examples=400, deadline=None)
@given(fleets())
def test_only_idle_models_are_evicted_never_a_busy_one(case):
    slots, name, budgets = case
    d = place(name, slots, budgets)
    by_name = {s.name: s for s in slots}
    for e in d.evict:
        s = by_name[e.name]
        assert e.name != name
        assert s.busy == 0 and s.state in ("ready", "sleeping"), (e, s)
        assert s.pool == by_name[name].pool
        if e.action == "sleep":
            assert s.state == "ready" and s.can_sleep


@settings(max_examples=400, deadline=None)
@given(fleets())
def test_stops_take_the_least_recently_used_first_and_every_sleep_is_needed(case):
    slots, name, budgets = case
    d = place(name, slots, budgets)
    me = next(s for s in slots if s.name == name)
    idle = sorted((s for s in slots if s.pool == me.pool and s.name != name and s.idle), key=lambda s: (s.last_used, s.name))
    stopped = [e.name for e in d.evict if e.action == "stop"]
    assert stopped == [s.name for s in idle[: len(stopped)]]
    short = d.need_mib - (budgets[me.pool] - used(slots, me.pool))
    for e in d.evict:
        if e.action == "sleep":
            assert sum(k.frees_mib for k in d.evict if k is not e) < short, "a sleep the others make unnecessary"


def test_a_model_that_fits_starts_beside_the_others():
    slots = [Slot("a", "gpu", 40, 5, "ready", 0, 1.0, True), Slot("b", "gpu", 30, 5, "stopped")]
    d = place("b", slots, {"gpu": 100})
    assert d.outcome == "run" and d.evict == [] and "fits" in d.reason


def test_idle_models_sleep_before_any_stops_and_busy_ones_make_it_wait():
    slots = [
        Slot("old", "gpu", 50, 10, "ready", 0, 1.0, True),
        Slot("new", "gpu", 40, 10, "ready", 0, 2.0, True),
        Slot("x", "gpu", 45, 10, "stopped"),
    ]
    d = place("x", slots, {"gpu": 100})
    assert [(e.name, e.action) for e in d.evict] == [("old", "sleep")]
    busy = [
        Slot("old", "gpu", 50, 10, "ready", 1, 1.0, True),
        Slot("new", "gpu", 40, 10, "ready", 2, 2.0, True),
        Slot("x", "gpu", 45, 10, "stopped"),
    ]
    d = place("x", busy, {"gpu": 100})
    assert d.outcome == "wait" and "busy: old, new" in d.reason
    assert place("x", slots, {"gpu": 44}).outcome == "never"


def test_a_sleeping_model_wakes_into_the_room_its_sleep_left():
    slots = [Slot("a", "gpu", 60, 10, "sleeping", 0, 1.0, True), Slot("b", "gpu", 50, 10, "ready", 0, 5.0, True)]
    d = place("a", slots, {"gpu": 110})
    assert d.outcome == "run" and d.need_mib == 50 and not d.evict
    d = place("a", slots, {"gpu": 100})  # 60 + 50 > 100: b sleeps
    assert [(e.name, e.action) for e in d.evict] == [("b", "sleep")]
