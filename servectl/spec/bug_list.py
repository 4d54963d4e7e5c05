"""`servectl patch list`: the known-bug catalog seen from one vLLM release (an environment, an image tag or a
release named), optionally for one recipe on one GPU profile.

Per entry: whether it applies, its state there (patch: patched / needs-patch / anchor-mismatch; guard: guarded;
warning: warned; avoided: servectl's settings add the entry's workaround; else fixed-upstream / not-affected) and
the upgrade that fixes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from servectl.catalog.gpu import GpuProfile
from servectl.catalog.known_bugs import KnownBug, known_bugs
from servectl.catalog.recipe import ModelRecipe
from servectl.spec import known_bug_guards
from servectl.vllmenv import args as va
from servectl.vllmenv.pyenv import Target

_PATCH_STATUS = {
    "applicable": "needs-patch",
    "already-applied": "patched",
    "anchor-mismatch": "anchor-mismatch",
    "not-affected": "not-affected",
    "fixed-upstream": "fixed-upstream",
}


@dataclass
class Row:
    id: str
    kind: str
    title: str
    versions: str
    fixed_in: str | None
    upgrade: str
    upstream: list[str]
    advice: str
    applies: bool | None  # None: no release given (the catalog as a whole)
    status: str
    reason: str
    conditions: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Scope:
    """What the list is for: a release (and its build), optionally an environment, a recipe and a GPU profile."""

    version: str | None = None
    platform: str | None = None  # cuda / rocm / cpu of the environment or profile; None: any
    target: Target | None = None  # an environment to read the patched files of
    recipe: ModelRecipe | None = None
    profile: GpuProfile | None = None
    flags: tuple[str, ...] = ()  # vLLM flags of the launch (with a recipe)
    source: str = ""  # where the release comes from, for the header


def rows(scope: Scope) -> list[Row]:
    ctx = None
    avoided: tuple[str, ...] = ()
    if scope.version and scope.recipe is not None and scope.profile is not None:
        from servectl.spec.resolve import Request, resolve

        spec = resolve(Request(scope.recipe, scope.profile, list(scope.flags), force=True, vllm_version=scope.version))
        ctx = known_bug_guards.context(scope.recipe, scope.profile, va.parse_args(spec.vllm_args), spec.env, scope.version)
        avoided = spec.avoided_bugs
    out = []
    for bug in known_bugs():
        if bug.id in avoided:
            out.append(
                Row(
                    **_base(bug),
                    applies=False,
                    status="avoided",
                    reason=f"servectl's settings add {' '.join(bug.workaround)} on vLLM {scope.version}",
                )
            )
        else:
            out.append(_row(bug, scope, ctx))
    return out


def _conditions(bug: KnownBug) -> dict:
    return {k: v for k, v in asdict(bug.applies_to).items() if v}


def _base(bug: KnownBug) -> dict:
    return dict(
        id=bug.id,
        kind=bug.kind,
        title=bug.title,
        versions=bug.versions,
        fixed_in=bug.fixed_in,
        upgrade=f"vLLM {bug.fixed_in}" if bug.fixed_in else "none yet",
        upstream=list(bug.upstream),
        advice=bug.advice,
        conditions=_conditions(bug),
    )


def _row(bug: KnownBug, scope: Scope, ctx) -> Row:
    base = _base(bug)
    version = scope.version
    if version is None:
        return Row(**base, applies=None, status="-", reason="no release given")
    if not bug.affects(version):
        from packaging.version import Version

        fixed = bug.fixed_in is not None and Version(Version(version).public) >= Version(bug.fixed_in)
        return Row(
            **base,
            applies=False,
            status="fixed-upstream" if fixed else "not-affected",
            reason=f"vLLM {version} carries the fix" if fixed else f"vLLM {version} is outside {bug.versions}",
        )
    wanted = bug.applies_to.platforms
    if scope.platform and wanted and scope.platform not in wanted:
        return Row(**base, applies=False, status="not-affected", reason=f"the {scope.platform} build is not affected")
    if ctx is not None and not bug.matches(ctx):
        return Row(**base, applies=False, status="not-affected", reason="this recipe, GPU or its flags do not meet it")
    when = "" if ctx is not None else " when its conditions hold"
    if bug.kind == "guard":
        return Row(**base, applies=True, status="guarded", reason=f"plan, render and up refuse it{when}")
    if bug.kind == "warning":
        return Row(**base, applies=True, status="warned", reason=f"plan, render and up warn{when}")
    if scope.target is None:
        return Row(
            **base, applies=True, status="needs-patch", reason=f"an image built by `render --format dockerfile` carries it{when}"
        )
    from servectl.vllmenv import patches

    sel = patches.select_in(scope.target, patches.pick([bug.id])[0])
    return Row(
        **base,
        applies=sel.status.value in ("applicable", "already-applied", "anchor-mismatch"),
        status=_PATCH_STATUS[sel.status.value],
        reason=sel.reason,
    )
