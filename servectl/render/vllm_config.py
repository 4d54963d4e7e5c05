"""The YAML file for `vllm serve --config FILE`.

Mapping follows vLLM 0.32 `FlexibleArgumentParser.load_config_file` (vllm/utils/argparse_utils.py):
each key becomes `--key`; `true` becomes a bare `--key` (and `false` becomes `--no-key` where such a
flag exists); a mapping becomes one JSON argument; a list becomes `--key item item`; anything else
`--key str(value)`. `model:` becomes `--model`, which `vllm serve` accepts when no positional model
is given. So: boolean flags -> true, dotted flags (--limit-mm-per-prompt.video 0) and JSON objects
-> nested mappings (merged per flag), numbers -> numbers when str() gives the token back unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from servectl.vllmenv import args as va
from servectl.spec.models import LaunchSpec

FILENAME = "vllm-config.yaml"
_INT = re.compile(r"^-?[1-9][0-9]*$|^0$")


def _scalar(token: str) -> Any:
    """A YAML scalar that vLLM turns back into the same token (str(value) == token)."""
    if _INT.match(token):
        return int(token)
    try:
        number = float(token)
    except ValueError:
        return token
    return number if str(number) == token else token


def _json_object(token: str) -> dict | None:
    if not token.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(token)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _dotted_value(token: str) -> Any:
    """vLLM reads a dotted flag's value as JSON first (argparse_utils.parse_args), else as a string."""
    try:
        return json.loads(token)
    except json.JSONDecodeError:
        return token


def config_dict(spec: LaunchSpec) -> dict[str, Any]:
    """Ordered mapping for the config file: model first, then the flags in argv order."""
    out: dict[str, Any] = {"model": spec.model}
    for flag in va.parse_args(spec.vllm_args):
        name = va.canonical(flag.name)[2:]
        key, dot, path = name.partition(".")
        if dot:
            nested: Any = _dotted_value(flag.value or "")
            for part in reversed(path.split(".")):
                nested = {part: nested}
            current = out.get(key)
            if isinstance(current, dict):
                _merge(current, nested)
            else:
                out[key] = nested
            continue
        if flag.value is None:
            out[key] = True
            continue
        obj = _json_object(flag.value)
        if obj is not None:
            if isinstance(out.get(key), dict):
                _merge(out[key], obj)
            else:
                out[key] = obj
        else:
            out[key] = _scalar(flag.value)
    if spec.argv_binds:
        out["host"] = spec.host
        out["port"] = spec.port
    return out


def header(spec: LaunchSpec) -> str:
    """Comment lines: how to start it, and the environment the file cannot carry."""
    lines = [f"# {spec.recipe} on {spec.profile}: vllm serve --config {FILENAME}"]
    if spec.env:
        lines.append("# environment: " + " ".join(f"{k}={v}" for k, v in spec.env.items()))
    if spec.secret_env:
        lines.append("# secrets, exported by name: " + " ".join(spec.secret_env))
    return "\n".join(lines) + "\n"


def render(spec: LaunchSpec) -> str:
    return header(spec) + yaml.safe_dump(config_dict(spec), sort_keys=False, default_flow_style=False, allow_unicode=True)
