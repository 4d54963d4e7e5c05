"""vLLM argument lists as ordered (flag, value) pairs: parse tokens, override in place, print back.

Kept token-exact so a card's command survives a round trip unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    name: str  # with leading dashes, e.g. --max-model-len or --limit-mm-per-prompt.video
    value: str | None  # None for boolean flags


def parse_args(tokens: list[str]) -> list[Flag]:
    """Split vLLM tokens into flags; `--a=b` becomes (--a, b); a value never starts with `--`."""
    flags: list[Flag] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("-"):
            raise ValueError(f"expected a flag, got {tok!r}")
        if "=" in tok and tok.startswith("--"):
            name, value = tok.split("=", 1)
            flags.append(Flag(name, value))
            i += 1
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt is not None and not nxt.startswith("--"):
            flags.append(Flag(tok, nxt))
            i += 2
        else:
            flags.append(Flag(tok, None))
            i += 1
    return flags


def to_tokens(flags: list[Flag]) -> list[str]:
    out: list[str] = []
    for f in flags:
        out.append(f.name)
        if f.value is not None:
            out.append(f.value)
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
    out = [Flag(f.name, f.value) for f in base]
    for f in extra:
        key = canonical(f.name)
        for existing in out:
            if canonical(existing.name) == key:
                existing.value = f.value
                break
        else:
            out.append(Flag(f.name, f.value))
    return out


def remove(flags: list[Flag], name: str) -> list[Flag]:
    key = canonical(name)
    return [f for f in flags if canonical(f.name) != key]
