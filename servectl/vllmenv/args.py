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

    def suggest(self, name: str) -> list[str]:
        import difflib

        pool = [*self.options, *(a for a in self.alias if a.startswith("--"))]
        return difflib.get_close_matches(name.split(".", 1)[0], pool, n=2, cutoff=0.7)


@functools.cache
def bundled_options() -> VllmOptions:
    """The table captured from the CPU build servectl tests with (its "vllm" key says which release);
    aliases and value counts change rarely across releases."""
    return VllmOptions(json.loads(resources.files("servectl.vllmenv").joinpath("vllm_serve_options.json").read_text()))


_NUMBER = re.compile(r"^-\d+(\.\d*)?([eE][-+]?\d+)?$")
_UNDERSCORES = re.compile(r"(?<=--)[^.]*")  # vLLM's own pattern: the name up to the first dot


def _is_value(token: str) -> bool:
    """A word that argparse would take as a value rather than an option (negative numbers included)."""
    return not token.startswith("-") or bool(_NUMBER.match(token)) or token == "-"


def _check_type(name: str, value: str, kind: str | None) -> None:
    try:
        if kind == "int":
            int(value)
        elif kind == "float":
            float(value)
        elif kind == "size" and value != "auto":
            parse_size(value)
    except ValueError:
        raise ValueError(f"{name} expects {'an integer' if kind == 'int' else 'a number' if kind == 'float' else 'a size such as 32k or 20600M'}, got {value!r}") from None


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
            _check_type(name, value, spec.get("type"))
        flags.append(Flag(name, value, tuple(extra)))
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
