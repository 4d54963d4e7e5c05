"""Run by the vLLM environment's interpreter (never imported by servectl): parse `vllm serve` argv
lists with vLLM's own parser and report the first error of each.

stdin: JSON list of argv lists (what follows `vllm serve`; `--config FILE` works as on the command
line). stdout: JSON list, one {"error": str | null} per argv. One process checks them all, since
importing vLLM costs seconds.
"""

import contextlib
import io
import json
import sys

_real_stdout = sys.stdout
sys.stdout = sys.stderr  # vLLM's logging and argparse's usage text must not mix with our JSON

try:  # vLLM >= 0.2x keeps the serve parser here
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
except ImportError:  # older releases
    from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser

try:
    from vllm.tool_parsers import ToolParserManager
except ImportError:
    from vllm.entrypoints.openai.tool_parsers import ToolParserManager
from vllm.reasoning import ReasoningParserManager


def _error_line(text: str) -> str:
    """argparse prints the whole usage text; keep the `error:` line."""
    lines = [ln.strip() for ln in text.splitlines() if "error:" in ln]
    return lines[-1] if lines else (text.strip().splitlines() or ["rejected"])[-1]


def check(argv):
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = parser.parse_args(list(argv))
    except SystemExit:
        return _error_line(captured.getvalue())
    except Exception as exc:  # ValueError from --config handling, bad JSON values, ...
        return f"error: {exc}"
    args.subparser = "serve"
    try:
        validate_parsed_serve_args(args)
    except Exception as exc:
        return f"error: {str(exc).removeprefix('Error: ')}"
    tool = getattr(args, "tool_call_parser", None)
    if tool and tool not in ToolParserManager.list_registered():
        return (
            f"error: unknown --tool-call-parser {tool!r} (registered: {', '.join(sorted(ToolParserManager.list_registered()))})"
        )
    reasoning = getattr(args, "reasoning_parser", None)
    if reasoning and reasoning not in ReasoningParserManager.list_registered():
        return f"error: unknown --reasoning-parser {reasoning!r} (registered: {', '.join(sorted(ReasoningParserManager.list_registered()))})"
    speculative = getattr(args, "speculative_config", None)
    if isinstance(speculative, dict):
        return _speculative_problem(speculative)
    return None


def _literals(tp):
    import typing

    args = typing.get_args(tp)
    return {a for a in args if isinstance(a, str)} | {x for a in args if not isinstance(a, str) for x in _literals(a)}


def _speculative_problem(cfg):
    """--speculative-config is parsed to a dict only; its keys and method are checked against vLLM's own
    SpeculativeConfig (the engine would reject them at start-up, after loading the model)."""
    import dataclasses

    try:
        from vllm.config.speculative import SpeculativeConfig, SpeculativeMethod
    except ImportError:
        return None
    known = {f.name for f in dataclasses.fields(SpeculativeConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        return f"error: --speculative-config: unknown key(s) {', '.join(unknown)}"
    method = cfg.get("method")
    if method is not None and method not in _literals(SpeculativeMethod):
        return f"error: --speculative-config: unknown method {method!r}"
    return None


def main():
    argvs = json.load(sys.stdin)
    results = [{"error": check(list(a))} for a in argvs]
    _real_stdout.write(json.dumps(results) + "\n")
    _real_stdout.flush()


if __name__ == "__main__":
    main()
