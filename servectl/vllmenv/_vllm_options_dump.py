"""Run by a vLLM environment's interpreter (never imported by servectl): `vllm serve`'s options as
JSON on stdout, read from vLLM's own parser (make_arg_parser), for servectl.vllmenv.args.

Per option: its aliases (e.g. -tp), the negative form of a boolean (--no-X), how many values it
takes (argparse nargs: 0, 1, "?", "+"), the value type vLLM converts with (int, float, size for
human_readable_int, json, str) and its choices.
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


def main():
    try:
        from importlib.metadata import version

        vllm_version = version("vllm")
    except Exception:
        import vllm

        vllm_version = getattr(vllm, "__version__", None)
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
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
        options[longs[0]] = entry
    _out.write(json.dumps({"vllm": vllm_version, "options": options}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
