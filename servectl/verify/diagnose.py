"""vLLM log text -> the root cause(s) of a failed start, each with remedy, the flag change and the evidence line.

Pure. The rule table is data (profiles/diagnose.yaml, validated by servectl.specs.DiagnoseFile); this module only
matches it. vLLM wraps the real error ("Engine core initialization failed. See root cause above",
vllm/v1/engine/utils.py): wrapper rules are reported only when no root-cause rule matched, and then carry the
error lines above them as context.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable

from servectl.catalog.load import _read, parse_yaml_model
from servectl.errors import UserError
from servectl.hardware.preflight import utilization_that_fits
from servectl.catalog.diagnose_schema import DiagnoseFile, DiagnosisRule
from servectl.verify.report import Diagnosis


def _num(v: str | None) -> float:
    if v is None:
        raise ValueError("missing value")
    return float(str(v).replace(",", ""))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


# Named computations a rule's `compute` may call (arguments: group / extract names or quoted literals).
COMPUTATIONS: dict[str, Callable[..., str]] = {
    "utilization_that_fits": lambda free, total: f"{utilization_that_fits(_num(free), _num(total)):.2f}",
    "half": lambda n: str(max(1, math.floor(_num(n) / 2))),
    "plus_one": lambda n: str(int(_num(n)) + 1),
    "either": lambda a, b: a if a else b,
}

_CALL = re.compile(r"^\s*(?P<fn>\w+)\((?P<args>.*)\)\s*$")


def _evaluate(expr: str, values: dict[str, str | None]) -> str:
    m = _CALL.match(expr)
    if not m or m.group("fn") not in COMPUTATIONS:
        raise UserError(f"diagnose rule computation {expr!r} is not one of {sorted(COMPUTATIONS)}")
    args = []
    for a in (x.strip() for x in m.group("args").split(",") if x.strip()):
        args.append(a[1:-1] if a[:1] in "'\"" else values.get(a))
    return COMPUTATIONS[m.group("fn")](*args)


@functools.lru_cache(maxsize=4)
def _load(key: str) -> tuple[DiagnosisRule, ...]:
    text, src = _read("diagnose.yaml")
    doc = parse_yaml_model(text, src, DiagnoseFile)
    for r in doc.rules:
        for rx in [r.pattern, *r.requires, r.after or "", r.not_after or "", *r.extract.values()]:
            try:
                re.compile(rx)
            except re.error as exc:
                raise UserError(f"{src}: rule {r.id}: bad regex {rx!r}: {exc}") from None
    return tuple(sorted(doc.rules, key=lambda r: -r.priority))


def load_rules() -> tuple[DiagnosisRule, ...]:
    """The validated rule table, highest priority first."""
    from servectl.catalog.load import profiles_dir

    return _load(str(profiles_dir()))


def _context(lines: list[str], upto: int, limit: int = 5) -> list[str]:
    """Error lines above a wrapper (the root cause vLLM points to)."""
    rx = re.compile(r"\b(?:\w+Error|Exception|ERROR)\b")
    hits = [ln.strip() for ln in lines[:upto] if rx.search(ln) and "Traceback" not in ln]
    return hits[-limit:]


def _apply(rule: DiagnosisRule, lines: list[str], text: str) -> Diagnosis | None:
    if any(not re.search(rx, text) for rx in rule.requires):
        return None
    rx = re.compile(rule.pattern)
    after = re.compile(rule.after) if rule.after else None
    not_after = re.compile(rule.not_after) if rule.not_after else None
    seen_after = seen_not = False
    for i, line in enumerate(lines):
        m = rx.search(line)
        if m and (after is None or seen_after) and not seen_not:
            values: dict[str, str | None] = dict(m.groupdict())
            for name, erx in rule.extract.items():
                em = re.search(erx, text)
                values[name] = em.group(1) if em else None
            try:
                for name, expr in rule.compute.items():
                    values[name] = _evaluate(expr, values)
            except (ValueError, TypeError, ZeroDivisionError):
                pass
            fmt = {k: ("?" if v is None else v) for k, v in values.items()}
            fill = _Default(fmt)
            fix = rule.fix.format_map(fill) if rule.fix else None
            return Diagnosis(rule=rule.id, cause=rule.cause.format_map(fill), remedy=rule.remedy.format_map(fill),
                             fix=None if fix and "?" in fix.split() else fix,
                             evidence=line.strip()[:500], line=i + 1,
                             context=_context(lines, i) if rule.wrapper else [])
        if after is not None and after.search(line):
            seen_after = True
        if not_after is not None and not_after.search(line):
            seen_not = True
    return None


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def diagnose(log_text: str, rules: tuple[DiagnosisRule, ...] | None = None) -> list[Diagnosis]:
    """Root causes found in a vLLM log, most important first; wrappers only when nothing else matched."""
    rules = load_rules() if rules is None else rules
    lines = log_text.splitlines()
    found = [d for r in rules if not r.wrapper and (d := _apply(r, lines, log_text))]
    if not found:
        found = [d for r in rules if r.wrapper and (d := _apply(r, lines, log_text))]
    # one diagnosis per evidence line (the most specific rule wins: rules are in priority order)
    out, lines_seen = [], set()
    for d in found:
        if d.line in lines_seen:
            continue
        lines_seen.add(d.line)
        out.append(d)
    return out
