"""Secrets never reach an output: one function, `redact`, that every printed or written text and every
--json document goes through (servectl.console calls it; so does anything that writes a file a user may share).

What counts as a secret:
- URL credentials: `scheme://user:password@host` -> `scheme://<redacted>@host`;
- header values: `Authorization: Bearer ...`, `X-Api-Key: ...`, `Cookie: ...`, a bare `Bearer TOKEN`;
- the value of a vLLM option that names a secret (`--api-key`, `--hf-token`, and any other long option of
  vLLM's table whose name ends in -key, -token, -secret or -password and takes a value), however vLLM's
  parser would accept it: `--api_key`, `--api-key=V`, and every prefix argparse expands to it
  (`--api-ke V`: argparse's allow_abbrev, which vLLM's FlexibleArgumentParser keeps), including the
  dict/JSON spelling vLLM logs (`'api_key': ['V']` in its "non-default args" line);
- environment assignments of secret-looking names (`HF_TOKEN=...`, `VLLM_API_KEY=...`);
- the values themselves: every environment variable whose name looks secret, and every value registered
  with `register_secret` (an API key read from `--api-key-env VAR`, whatever VAR is called), wherever they
  appear (also the pieces of a value split at a control character, since messages show those escaped).
"""

from __future__ import annotations

import functools
import json
import os
import re
from importlib import resources
from typing import Any

MASK = "<redacted>"
# the last word of an option or variable name that holds a secret
_SECRET_WORD = r"(?:key|token|secret|password|passwd|credentials?)"
_SECRET_ENV_NAME = re.compile(rf"(?i)(?:^|_){_SECRET_WORD}$|^(?:hf_token|api_key|apikey)$")
_MIN_SECRET_LEN = 4  # shorter values (say "1") would mask ordinary text

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s?#]+)@")
_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key|cookie|set-cookie)(\s*[:=]\s*)"
    r"(?:(bearer|basic|token)\s+)?(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+([A-Za-z0-9._~+/=-]{4,})")
_ENV_ASSIGN = re.compile(r"\b((?:[A-Za-z0-9]+_)*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?))=(\"[^\"]*\"|'[^']*'|\S+)")
_QUOTED_OR_WORD = r"(?:\"[^\"]*\"|'[^']*'|[^\s\"']\S*)"
_LONG_FLAG = re.compile(rf"(?<![\w-])(--[A-Za-z0-9][A-Za-z0-9_-]*)(=|[ \t]+)({_QUOTED_OR_WORD})")
_MORE_VALUES = re.compile(rf"(--[A-Za-z0-9][A-Za-z0-9_-]*(?:=|[ \t]+){re.escape(MASK)})((?:[ \t]+(?!-){_QUOTED_OR_WORD})+)")
_registered: set[str] = set()


@functools.cache
def _vllm_options() -> dict[str, dict]:
    """vLLM's `serve` options (servectl/vllmenv/vllm_serve_options.json, dumped from vLLM's own parser)."""
    try:
        text = resources.files("servectl.vllmenv").joinpath("vllm_serve_options.json").read_text(encoding="utf-8")
        return json.loads(text)["options"]
    except (OSError, ValueError, KeyError):
        return {}


def _option_strings() -> dict[str, str]:
    """Every long option string vLLM's parser accepts -> its long name (aliases and --no- forms included)."""
    out: dict[str, str] = {}
    for long, spec in _vllm_options().items():
        out[long] = long
        for alias in spec.get("aliases", []):
            if alias.startswith("--"):
                out[alias] = long
        if spec.get("negative"):
            out[spec["negative"]] = spec["negative"]
    return out


@functools.cache
def secret_options() -> frozenset[str]:
    """vLLM's long options whose value is a secret: the name's last word says so and the option takes a value."""
    found = {long for long, spec in _vllm_options().items() if re.search(rf"-{_SECRET_WORD}$", long) and spec.get("nargs") != 0}
    return frozenset(found | {"--api-key", "--hf-token"})


@functools.cache
def secret_option_for(flag: str) -> str | None:
    """The secret option a flag as typed stands for, or None: `--api_key`, `--api-key`, and any prefix that
    argparse would expand to a secret option (also an ambiguous one, which vLLM refuses, but whose value
    was still typed as a secret)."""
    name = flag.split("=", 1)[0]
    if not name.startswith("--") or len(name) < 3:
        return None
    name = "--" + name[2:].split(".", 1)[0].replace("_", "-")
    strings = _option_strings()
    if name in strings:
        long = strings[name]
        return long if long in secret_options() else None
    matches = {strings[s] for s in strings if s.startswith(name)}
    hits = sorted(matches & secret_options())
    return hits[0] if hits else None


def register_secret(value: str | None) -> None:
    """Mask this value (and its pieces between control characters) in every later output."""
    if not value:
        return
    for piece in [value, *re.split(r"[\x00-\x1f\x7f]+", value)]:
        piece = piece.strip()
        if len(piece) >= _MIN_SECRET_LEN:
            _registered.add(piece)


_values_memo: tuple[tuple, list[str]] | None = None


def _secret_values() -> list[str]:
    """Registered values and the secret-looking environment's, longest first. Remembered for as long as the
    environment and the registered values stay as they are (every printed line asks; the answer rarely changes)."""
    global _values_memo
    key = (tuple(os.environ.items()), frozenset(_registered))
    if _values_memo is not None and _values_memo[0] == key:
        return _values_memo[1]
    found = _find_secret_values()
    _values_memo = (key, found)
    return found


def _find_secret_values() -> list[str]:
    values = set(_registered)
    for name, value in os.environ.items():
        if _SECRET_ENV_NAME.search(name) and value:
            for piece in [value, *re.split(r"[\x00-\x1f\x7f]+", value)]:
                piece = piece.strip()
                if len(piece) >= _MIN_SECRET_LEN:
                    values.add(piece)
    return sorted(values, key=len, reverse=True)  # longest first: a value containing another is masked whole


def _secret_keys() -> list[str]:
    """Secret options as vLLM logs them in dicts: api_key, hf_token."""
    return sorted({o[2:].replace("-", "_") for o in secret_options()})


@functools.cache
def _dict_key_pattern() -> re.Pattern:
    keys = "|".join(re.escape(k) for k in _secret_keys())
    return re.compile(rf"(['\"]?)\b({keys})\1(\s*[:=]\s*)(\[[^\]]*\]|\"[^\"]*\"|'[^']*'|[^\s,}}]+)")


def _flag_value(m: re.Match) -> str:
    if secret_option_for(m.group(1)) is None:
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{MASK}"


def _more_values(m: re.Match) -> str:
    """Further words after a masked value of an option taking several (`--api-key A B`: nargs '+')."""
    option = secret_option_for(m.group(1).split("=", 1)[0].split()[0])
    if option is None or _vllm_options().get(option, {}).get("nargs") not in ("+", "*"):
        return m.group(0)
    return m.group(1) + re.sub(_QUOTED_OR_WORD, MASK, m.group(2))


def redact(text: str) -> str:
    """`text` with every secret it carries replaced by <redacted>."""
    return _redact(text, _secret_values())


def _redact(text: str, secret_values: list[str]) -> str:
    if not text:
        return text
    for value in secret_values:
        if value in text:
            text = text.replace(value, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{(m.group(3) + ' ') if m.group(3) else ''}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _ENV_ASSIGN.sub(lambda m: f"{m.group(1)}={MASK}", text)
    if "--" in text:
        text = _LONG_FLAG.sub(_flag_value, text)
        if MASK in text:
            text = _MORE_VALUES.sub(_more_values, text)
    if any(k in text for k in _secret_keys()):
        text = _dict_key_pattern().sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{MASK}", text)
    return text


def carries_secret(text: str) -> bool:
    """Whether `text` holds a secret itself: a secret environment value or registered value, URL credentials,
    a Bearer token, or a value given to a secret vLLM option. (Unlike `redact`, a placeholder such as
    `HF_TOKEN=...` or `--from-file=HF_TOKEN=/dev/stdin` in a hint is not one.)"""
    if any(value in text for value in _secret_values()):
        return True
    if _URL_CREDENTIALS.search(text) or _BEARER.search(text):
        return True
    return any(secret_option_for(m.group(1)) for m in _LONG_FLAG.finditer(text)) if "--" in text else False


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret options masked (`--api-key V` and `--api-key=V` alike)."""
    out: list[str] = []
    masking = False
    for tok in argv:
        if masking and not tok.startswith("-"):
            out.append(MASK)
            continue
        masking = False
        name, eq, _ = tok.partition("=")
        if secret_option_for(name):
            if eq:
                out.append(f"{name}={MASK}")
            else:
                out.append(tok)
                masking = True
            continue
        out.append(redact(tok))
    return out


def redact_data(data: Any) -> Any:
    """A JSON-able document with every string redacted (keys too)."""
    return _redact_data(data, _secret_values())


def _redact_data(data: Any, values: list[str]) -> Any:
    if isinstance(data, str):
        return _redact(data, values)
    if isinstance(data, dict):
        return {_redact(k, values) if isinstance(k, str) else k: _redact_data(v, values) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_redact_data(v, values) for v in data]
    return data
