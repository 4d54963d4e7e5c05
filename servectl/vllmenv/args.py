"""vLLM argument lists as ordered (flag, value) pairs: parse tokens, override in place, print back.

Kept token-exact so a card's command survives a round trip unchanged.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources

# vLLM size suffixes (vllm/engine/arg_utils.py human_readable_int): upper case binary, lower case decimal.
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """Parse a byte count the way vLLM does: 20600M = 20600 * 2**20, 32k = 32,000; plain digits are bytes."""
    raw = text.strip().replace("_", "")
    if not raw:
        raise ValueError("empty size")
    unit = raw[-1]
    if unit in _BINARY:
        return int(float(raw[:-1]) * _BINARY[unit])
    if unit in _DECIMAL:
        return int(float(raw[:-1]) * _DECIMAL[unit])
    return int(raw)


@dataclass
class Flag:
    name: str  # canonical: the long name, e.g. --tensor-parallel-size for -tp; dotted keys kept (--x.key)
    value: str | None  # None for boolean flags
    extra: tuple[str, ...] = ()  # further values of a flag taking several (nargs "+": --served-model-name a b)


class VllmOptions:
    """`vllm serve`'s options as vLLM's own parser declares them (servectl/vllmenv/_vllm_options_dump.py)."""

    def __init__(self, data: dict):
        self.vllm: str | None = data.get("vllm")
        self.options: dict[str, dict] = data["options"]
        self.alias: dict[str, str] = {}
        for long, o in self.options.items():
            for a in o.get("aliases", []):
                self.alias[a] = long
            if o.get("negative"):
                self.alias[o["negative"]] = o["negative"]

    def spec(self, name: str) -> dict | None:
        if name in self.options:
            return self.options[name]
        if name in self.alias and name.startswith("--no-"):
            return {"nargs": 0, "type": None}
        return None

    def known(self, name: str) -> bool:
        return self.spec(name.split(".", 1)[0]) is not None

    def expand(self, name: str) -> str:
        """An abbreviation as argparse reads it (allow_abbrev, which vLLM's FlexibleArgumentParser keeps): the one
        option string `name` starts; the name itself when it is an option or starts none. ValueError when
        it starts several (argparse refuses an ambiguous option)."""
        if name in self.options or name in self.alias or not name.startswith("--") or len(name) < 3:
            return name
        pool = [*self.options, *(a for a in self.alias if a.startswith("--"))]
        hits = sorted(s for s in pool if s.startswith(name))
        if len(hits) > 1:
            raise ValueError(
                f"ambiguous option {name}: could match {', '.join(hits[:4])}"
                + (f" (+{len(hits) - 4} more)" if len(hits) > 4 else "")
            )
        return hits[0] if hits else name

    def suggest(self, name: str) -> list[str]:
        import difflib

        pool = [*self.options, *(a for a in self.alias if a.startswith("--"))]
        return difflib.get_close_matches(name.split(".", 1)[0], pool, n=2, cutoff=0.7)


@functools.cache
def bundled_options() -> VllmOptions:
    """The table captured from the CPU build servectl tests with (its "vllm" key says which release);
    aliases and value counts change rarely across releases."""
    return VllmOptions(json.loads(resources.files("servectl.vllmenv").joinpath("vllm_serve_options.json").read_text()))


_NAME_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NUMBER = re.compile(r"^-\d+(\.\d*)?([eE][-+]?\d+)?$")
_UNDERSCORES = re.compile(r"(?<=--)[^.]*")  # vLLM's own pattern: the name up to the first dot


def _is_value(token: str) -> bool:
    """A word that argparse would take as a value rather than an option (negative numbers included)."""
    return not token.startswith("-") or bool(_NUMBER.match(token)) or token == "-"


# Stricter than vLLM's own bound (ge -1): -1 and `auto` mean "derive it", 0 is no length.
_AUTO_OR_POSITIVE = {"--max-model-len"}


def _check_type(name: str, value: str, kind: str | None, bounds: dict | None = None) -> None:
    """The value converts as vLLM converts it, is finite, and is within vLLM's own bounds (ValueError naming
    the flag otherwise). JSON values are parsed strictly: no NaN, no Infinity, no number beyond a float."""
    import math

    from servectl.fsutil import loads_strict

    if kind == "json":
        try:
            loads_strict(value)
        except ValueError as exc:
            if value.lstrip()[:1] in ("{", "["):
                raise ValueError(f"{name} is not valid JSON ({exc})") from None
        return
    try:
        if kind == "int":
            number: float | None = int(value)
        elif kind == "float":
            number = float(value)
        elif kind == "size" and value.lower() != "auto":
            number = parse_size(value)
        else:
            number = None
    except (ValueError, OverflowError):
        raise ValueError(
            f"{name} expects {'an integer' if kind == 'int' else 'a number' if kind == 'float' else 'a size such as 32k or 20600M'}, got {value!r}"
        ) from None
    if number is None:
        return
    if not math.isfinite(number):
        raise ValueError(f"{name} expects a finite number, got {value!r}")
    if name in _AUTO_OR_POSITIVE:
        if number != -1 and number < 1:
            raise ValueError(f"{name} must be at least 1 (or auto), got {value!r}")
        return
    for key, ok, words in (
        ("ge", lambda a, b: a >= b, "at least"),
        ("gt", lambda a, b: a > b, "more than"),
        ("le", lambda a, b: a <= b, "at most"),
        ("lt", lambda a, b: a < b, "less than"),
    ):
        limit = (bounds or {}).get(key)
        if limit is not None and not ok(number, limit):
            raise ValueError(f"{name} must be {words} {limit:g} (vLLM's own bound), got {value!r}")


def parse_args(tokens: list[str], options: VllmOptions | None = None) -> list[Flag]:
    """vLLM tokens as canonical flags, the way vLLM's parser reads them.

    vllm/utils/argparse_utils.py FlexibleArgumentParser.parse_args: `--a_b` is `--a-b` (up to the
    first dot), `--x=v` is `--x v`, `-O3` / `-O 3` is `--optimization-level 3`, `--cfg.key v` sets
    one key of a JSON option; argparse then resolves aliases (-tp is --tensor-parallel-size) and
    takes as many values as the option declares. Flags the table does not know keep the old rule
    (a value unless the next word starts with `--`); `unknown_flags` lists them.
    """
    opts = options or bundled_options()
    flags: list[Flag] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if _is_value(tok):
            raise ValueError(f"expected a flag, got {tok!r}")
        value: str | None = None
        if tok.startswith("-O") and not tok.startswith("--"):
            name, value = "--optimization-level", (tok[3:] if tok[2:3] == "=" else tok[2:]) or None
        else:
            name = tok
            if "=" in tok:
                name, value = tok.split("=", 1)
            if name.startswith("--"):
                name = _UNDERSCORES.sub(lambda m: m.group(0).replace("_", "-"), name, count=1)
        base, dot, key = name.partition(".")
        if not dot:
            base = opts.expand(base)
        base = opts.alias.get(base, base)
        name = base + dot + key
        spec = opts.spec(base)
        if spec is None:
            if value is None and i < len(tokens) and not tokens[i].startswith("--"):
                value, i = tokens[i], i + 1
            flags.append(Flag(name, value))
            continue
        nargs = 1 if dot else spec["nargs"]  # a dotted key always takes one value
        if nargs == 0:
            if value is not None:
                raise ValueError(f"{name} takes no value, got {value!r}")
            flags.append(Flag(name, None))
            continue
        if value is None and i < len(tokens) and _is_value(tokens[i]):
            value, i = tokens[i], i + 1
        if value is None:
            if nargs == "?":
                flags.append(Flag(name, None))
                continue
            raise ValueError(f"{name} needs a value")
        extra: list[str] = []
        if nargs in ("+", "*"):
            while i < len(tokens) and _is_value(tokens[i]):
                extra.append(tokens[i])
                i += 1
        if not dot:
            _check_type(name, value, spec.get("type"), spec.get("bounds"))
        flags.append(Flag(name, value, tuple(extra)))
    for f in flags:  # what goes into shell scripts, YAML and unit files: printable (a template may span lines)
        if _NAME_CONTROL.search(f.name):
            raise ValueError(f"{f.name!r} is not a flag (it holds a control character)")
        if any(_VALUE_CONTROL.search(v) for v in (f.value or "", *f.extra)):
            raise ValueError(f"the value of {f.name} holds a control character (only newlines and tabs may appear)")
    return flags


def unknown_flags(flags: list[Flag], options: VllmOptions | None = None) -> list[str]:
    """Names of flags the options table does not know (typos, or options of another vLLM release)."""
    opts = options or bundled_options()
    return [f.name for f in flags if not opts.known(f.name)]


def to_tokens(flags: list[Flag]) -> list[str]:
    out: list[str] = []
    for f in flags:
        out.append(f.name)
        if f.value is not None:
            out.append(f.value)
        out.extend(f.extra)
    return out


def canonical(name: str) -> str:
    """vLLM accepts --max_model_len and --max-model-len alike."""
    return "--" + name.lstrip("-").replace("_", "-")


def get(flags: list[Flag], name: str) -> str | None:
    key = canonical(name)
    for f in reversed(flags):
        if canonical(f.name) == key:
            return f.value if f.value is not None else ""
    return None


def has(flags: list[Flag], name: str) -> bool:
    return get(flags, name) is not None


def merge(base: list[Flag], extra: list[Flag]) -> list[Flag]:
    """Later flags replace earlier ones of the same name in place; new ones are appended."""
    out = [Flag(f.name, f.value, f.extra) for f in base]
    for f in extra:
        key = canonical(f.name)
        for existing in out:
            if canonical(existing.name) == key:
                existing.value, existing.extra = f.value, f.extra
                break
        else:
            out.append(Flag(f.name, f.value, f.extra))
    return out


def remove(flags: list[Flag], name: str) -> list[Flag]:
    key = canonical(name)
    return [f for f in flags if canonical(f.name) != key]
