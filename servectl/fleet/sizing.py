"""A fleet file -> the fleet: every model resolved to a launch, sized by its plan (servectl.plan.share), with the
device budgets, the sleep choice and the names that route to it. Every problem of every model is collected and
reported as one line with the file and line of the value at fault (FleetFileError).

`serving=False` (`serve --plan`, `render --fleet`) touches nothing: no tiny model is generated and no vLLM
environment is asked; `serving=True` also checks the flags with the environment's own vLLM parser and runs the
pre-flight and patch checks `servectl up` runs, once per model.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from servectl.catalog.load import load_catalog
from servectl.catalog.preset_schema import SamplingPreset
from servectl.errors import UserError
from servectl.fleet import config as fc
from servectl.fleet.source import resolve_model
from servectl.plan import share as plan_share
from servectl.spec.models import NAME_PATTERN, LaunchOptions, LaunchSpec
from servectl.spec.resolve import Request, resolve
from servectl.vllmenv import args as va

SLEEP_ENV = {"VLLM_SERVER_DEV_MODE": "1"}  # vLLM serves /sleep and /wake_up only in dev mode (0.10.2 - 0.32)
# vllm/platforms/interface.py is_sleep_mode_available: CUDA, ROCm and XPU only
CPU_NO_SLEEP = "vLLM's CPU build has no sleep mode (only its CUDA, ROCm and XPU builds have one)"


@dataclass(frozen=True)
class Member:
    """One model of a fleet, ready to start: its launch (port chosen at each start), its share and its rules."""

    name: str  # the name clients use
    record: str  # its deployment record's name (FLEET-MODEL)
    pool: str  # the device it shares: its GPU profile's name
    spec: LaunchSpec
    share: plan_share.Share
    sleep: bool  # sleeps instead of stopping (vLLM's sleep mode is on)
    ttl_s: float | None
    preload: bool
    aliases: tuple[str, ...]
    presets: dict[str, SamplingPreset] = field(repr=False)
    auto_presets: bool
    start_timeout_s: float


@dataclass(frozen=True)
class Fleet:
    name: str
    path: Path
    host: str
    port: int
    members: dict[str, Member]
    budgets: dict[str, plan_share.Budget]  # pool -> what its models may hold together
    routes: dict[str, tuple[str, str | None]]  # public name -> (member, preset)
    queue_max: int
    queue_timeout_s: float
    max_body: int
    python: str | None
    notes: list[str]


def _record_name(fleet: str, model: str) -> str:
    return f"{fleet}-{model}".replace("/", "-").replace(":", "-")[:63]


class _Problems:
    def __init__(self, src: fc.FleetSource):
        self.src = src
        self.lines: list[str] = []

    def add(self, loc: tuple[Any, ...], message: str) -> None:
        self.lines.append(self.src.problem(loc, message))


def _profile(cat, entry: fc.FleetModel, fleet: fc.FleetFile, recipe) -> Any:
    name = entry.gpu or fleet.gpu
    if name is None and list(recipe.profiles) == ["cpu"]:
        name = "cpu"
    if name is None:
        from servectl.launch.start import detect_profile

        name, _ = detect_profile(recipe, cat)
    return cat.gpu(name)


def _weights_gib(recipe, model_path: str | None) -> float | None:
    from servectl.plan.checkpoint import cached_checkpoint, weight_bytes

    where = Path(model_path) if model_path and Path(model_path).is_dir() else cached_checkpoint(recipe.repo)
    if where is None:
        return None
    try:
        return weight_bytes(where)[0] / 2**30
    except (UserError, OSError, ValueError, KeyError, TypeError):
        return None


def _presets(entry: fc.FleetModel, recipe) -> tuple[dict[str, SamplingPreset], bool]:
    from servectl.catalog.presets import select_presets
    from servectl.proxy.auto import check_auto, split_auto

    names, auto = split_auto(entry.presets)
    chosen = select_presets(names if names else recipe.sampling_presets)
    if auto:
        check_auto(chosen)
    return chosen, auto


class _Targets:
    """The vLLM release and host each profile's plans are for (one probe per profile)."""

    def __init__(self, python: str | None):
        self.python = python
        self.cache: dict[str, Any] = {}

    def __call__(self, profile):
        if profile.name not in self.cache:
            from servectl.plan import service

            self.cache[profile.name] = service.target_for(profile, python=self.python)
        return self.cache[profile.name]


class _At(Exception):
    """A problem of one model's entry, with the key it is about."""

    def __init__(self, key: tuple[Any, ...], message: str):
        super().__init__(message)
        self.key, self.message = key, message


@contextmanager
def _at(*key: Any):
    try:
        yield
    except UserError as exc:
        raise _At(key, exc.one_line()) from None


def _member(
    src: fc.FleetSource, name: str, entry: fc.FleetModel, cat, targets: _Targets, serving: bool, notes: list[str]
) -> Member:
    """One model resolved, sized and pinned (_At on the first problem, naming its key)."""
    fleet = src.fleet
    with _at("recipe" if entry.recipe and entry.recipe not in cat.models else "model"):
        resolved = resolve_model(entry.model, entry.recipe, cat, base=src.path.parent)
    recipe, model_path = resolved.recipe, resolved.model_path
    with _at("gpu"):
        profile = _profile(cat, entry, fleet, recipe)
    if fleet.preset is not None and fleet.preset not in profile.presets:
        raise _At(("gpu",), f"profile {profile.name} has no preset {fleet.preset!r} (presets: {', '.join(profile.presets)})")
    with _at("args"):
        try:
            va.parse_args(list(entry.args))
        except ValueError as exc:
            raise UserError(f"cannot read the vLLM flags: {exc}", "write them as vLLM does: --flag value") from None
    sleep_asked = entry.sleep or fleet.sleep
    sleep = sleep_asked != "off" and profile.vendor != "cpu"
    opts = LaunchOptions(name=_record_name(src.name, name), host="127.0.0.1", port=8000, model_path=model_path)
    with _at("model"):
        if model_path is None and recipe.generated and serving:
            opts = replace(opts, model_path=str(_tiny_model(fleet.python)))
    target = targets(profile)  # servectl's settings follow the release that runs (parsers, MTP, known-bug workarounds)
    with _at("args"):
        asked = None
        if serving and entry.args:
            from servectl.vllmenv.location import find_vllm_python
            from servectl.vllmenv.vllm_parser import serve_options

            asked = serve_options(find_vllm_python(fleet.python))
        overrides = [*entry.args, "--served-model-name", name]
        spec = resolve(
            Request(
                recipe, profile, overrides, env=dict(entry.env), options=opts, vllm_options=asked, vllm_version=target.version
            )
        )
    from servectl.plan import calibrate

    user_flags = va.parse_args(list(entry.args))
    if entry.context is not None:
        if va.has(user_flags, "--kv-cache-memory-bytes"):
            raise _At(("context",), "give `context` or --kv-cache-memory-bytes in `args`, not both")
        # the KV cache is sized for `context`: a pin the recipe's settings carry gives way
        kept = [f for f in va.parse_args(spec.vllm_args) if va.canonical(f.name) != "--kv-cache-memory-bytes"]
        spec = replace(spec, vllm_args=va.to_tokens(kept))
    budget = plan_share.budget(profile, fleet.preset, fc.size_bytes(fleet.memory_limit) if fleet.memory_limit else None)
    with _at("context" if entry.context else "args"):
        share = plan_share.share_for(
            recipe,
            profile,
            spec.vllm_args,
            spec.env,
            vllm_version=target.version,
            host=target.host,
            correction=calibrate.correction_for(recipe.name, profile.name, target.version),
            weights_gib=_weights_gib(recipe, opts.model_path),
            context=entry.context,
            concurrency=entry.concurrency,
            budget_mib=budget.budget_mib,
        )
    flags = va.merge(va.parse_args(spec.vllm_args), va.parse_args(share.flags))
    env = dict(spec.env)
    if sleep:
        flags = va.merge(flags, [va.Flag("--enable-sleep-mode", None)])
        env.update(SLEEP_ENV)
    spec = replace(spec, vllm_args=va.to_tokens(flags), env=env)
    notes += [f"{name}: {w}" for w in spec.warnings]
    if serving:
        with _at():
            notes += [f"{name}: {w}" for w in _preflight(recipe, profile, spec, fleet.python)]
    with _at("presets"):
        presets, auto = _presets(entry, recipe)
    ttl = fc.seconds(entry.ttl) if entry.ttl is not None else 0.0
    return Member(
        name=name,
        record=spec.name,
        pool=profile.name,
        spec=spec,
        share=share,
        sleep=sleep,
        ttl_s=ttl or None,
        preload=entry.preload,
        aliases=tuple(entry.aliases),
        presets=presets,
        auto_presets=auto,
        start_timeout_s=fc.seconds(entry.start_timeout if entry.start_timeout is not None else fleet.start_timeout),
    )


def _tiny_model(python: str | None) -> Path:
    from servectl.launch.start import tiny_model_path

    return tiny_model_path(python=python)


@functools.lru_cache(maxsize=4)
def _environment(python: str | None):
    """The vLLM environment that runs the servers, probed once per load (its release, packages)."""
    from servectl.vllmenv.location import find_vllm_python, resolve_target

    return resolve_target(find_vllm_python(python))


def _preflight(recipe, profile, spec: LaunchSpec, python: str | None) -> list[str]:
    """`servectl up`'s pre-flight and patch check for this launch, in the environment that will run it: refused
    (UserError) on a blocker, else its warnings."""
    from servectl.launch import checks

    target = _environment(python)
    errors, warnings = checks.preflight_problems(recipe, profile, spec, target)
    blockers = errors + checks.patch_problems(target, spec)
    if blockers:
        raise UserError(f"pre-flight: {blockers[0]}", "`servectl up` with the same model says more")
    return warnings


def _routes(members: dict[str, Member], problems: _Problems) -> dict[str, tuple[str, str | None]]:
    """Every public name -> (member, preset): names, aliases, and `<name or alias>-<preset>`."""
    routes: dict[str, tuple[str, str | None]] = {}
    owner: dict[str, tuple[Any, ...]] = {}

    def claim(public: str, target: tuple[str, str | None], loc: tuple[Any, ...]) -> None:
        if public in routes and routes[public] != target:
            problems.add(loc, f"the name {public!r} is also {'.'.join(map(str, owner[public]))}: names must differ")
            return
        routes[public], owner[public] = target, loc

    for m in members.values():
        claim(m.name, (m.name, None), ("models", m.name))
    for m in members.values():
        for i, alias in enumerate(m.aliases):
            if not fc.MODEL_NAME.match(alias):
                problems.add(("models", m.name, "aliases", i), f"alias {alias!r}: use letters, digits, '.', '_', ':', '/' or '-'")
                continue
            claim(alias, (m.name, None), ("models", m.name, "aliases", i))
    for m in members.values():
        for base in (m.name, *m.aliases):
            for preset in m.presets:
                if f"{base}-{preset}" not in routes:
                    routes[f"{base}-{preset}"], owner[f"{base}-{preset}"] = (m.name, preset), ("models", m.name, "presets")
    return routes


def load(path: Path, *, serving: bool = False, listen: str | None = None, python: str | None = None) -> Fleet:
    """Read, check and size a fleet file; FleetFileError lists every problem, one line each."""
    _environment.cache_clear()
    src = fc.read(path)
    if python is not None:
        src.fleet = replace(src.fleet, python=python)  # type: ignore[type-var]  # a frozen dataclass (catalog.base.schema)
    fleet = src.fleet
    problems = _Problems(src)
    cat = load_catalog()
    targets = _Targets(fleet.python)
    members: dict[str, Member] = {}
    notes: list[str] = []
    for name, entry in fleet.models.items():
        if not fc.MODEL_NAME.match(name):
            problems.add(("models", name), f"model name {name!r}: use letters, digits, '.', '_', ':', '/' or '-' (at most 128)")
            continue
        if not NAME_PATTERN.match(_record_name(src.name, name)):
            problems.add(("models", name), f"the record name {_record_name(src.name, name)!r} is not a valid deployment name")
            continue
        try:
            members[name] = _member(src, name, entry, cat, targets, serving, notes)
        except _At as exc:
            problems.add(("models", name, *exc.key), exc.message)
    budgets: dict[str, plan_share.Budget] = {}
    limit = fc.size_bytes(fleet.memory_limit) if fleet.memory_limit is not None else None
    for m in members.values():
        if m.pool not in budgets:
            budgets[m.pool] = plan_share.budget(m.spec.gpu_profile, fleet.preset, limit)
        b = budgets[m.pool]
        if m.share.awake_mib > b.budget_mib:
            problems.add(
                ("models", m.name),
                f"needs {m.share.awake_mib:,.0f} MiB on {m.pool}, more than the fleet may hold there "
                f"({b.budget_mib:,.0f} MiB: {b.reason}); lower its `context` or KV cache, or raise memory_limit",
            )
    no_sleep = [
        m.name for m in members.values() if m.spec.vendor == "cpu" and (fleet.models[m.name].sleep or fleet.sleep) != "off"
    ]
    if no_sleep:
        notes.append(
            f"{CPU_NO_SLEEP}: {', '.join(no_sleep)} stop{'s' if len(no_sleep) == 1 else ''} instead of sleeping "
            "when idle or evicted"
        )
    routes = _routes(members, problems)
    if problems.lines:
        raise fc.FleetFileError(problems.lines)
    host, port = fc.parse_listen(listen if listen is not None else fleet.listen)
    return Fleet(
        name=src.name,
        path=Path(path),
        host=host,
        port=port,
        members=members,
        budgets=budgets,
        routes=routes,
        queue_max=fleet.queue.max_waiting,
        queue_timeout_s=fc.seconds(fleet.queue.timeout),
        max_body=fleet.max_body_mib * 2**20,
        python=fleet.python,
        notes=notes,
    )
