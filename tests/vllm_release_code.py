"""Run one released vLLM module's code in the vLLM CPU environment's interpreter (not servectl's).

    PYTHON tests/vllm_release_code.py TOKENIZER_DIR SCENARIO=RELEASE_ROOT [SCENARIO=RELEASE_ROOT ...]

Each RELEASE_ROOT holds files of a released wheel (vllm/...), as shipped or as `servectl patch apply` left them. The
scenario loads those files under their own module names, so the release's own code runs; what the file imports
comes from the installed vLLM (the CPU build), imported once for every scenario, with one alias where a module moved since
(vllm.entrypoints.openai.engine.protocol -> vllm.entrypoints.generate.base.protocol). The tokenizer is the tiny
test model's real one, which carries <think>, </think>, <tool_call> and </tool_call>. Prints one line per
scenario: RESULT <json>.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(".")
_REPLACED: dict[str, object] = {}  # module name -> the installed module it shadows, restored after each scenario


def _shadow(name: str, module: object) -> None:
    _REPLACED.setdefault(name, sys.modules.get(name))
    sys.modules[name] = module


def restore() -> None:
    for name, original in _REPLACED.items():
        if original is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = original
    _REPLACED.clear()


def load(name: str) -> object:
    path = ROOT / (name.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    _shadow(name, mod)
    spec.loader.exec_module(mod)
    return mod


def alias_moved_protocol() -> None:
    _shadow("vllm.entrypoints.openai.engine.protocol", importlib.import_module("vllm.entrypoints.generate.base.protocol"))


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(sys.argv[1])


WEATHER_CALL = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"


def reasoning_tool_call() -> dict:
    """Qwen3.5 opens <tool_call> inside an unclosed <think> (vllm#35687)."""
    alias_moved_protocol()
    load("vllm.reasoning.abs_reasoning_parsers")
    load("vllm.reasoning.basic_parsers")
    mod = load("vllm.reasoning.qwen3_reasoning_parser")
    tok = tokenizer()
    parser = mod.Qwen3ReasoningParser(tok)
    output = "I should look the weather up.\n" + WEATHER_CALL
    reasoning, content = parser.extract_reasoning(output, None)
    # mid-generation: the call is open (a paired <tool_call>...</tool_call> counts as a template example)
    ids = tok.encode(output[: output.index("<parameter=")], add_special_tokens=False)
    return {"reasoning": reasoning, "content": content, "reasoning_end": parser.is_reasoning_end(ids)}


def _coder_parser(tok):
    alias_moved_protocol()
    mod = load("vllm.tool_parsers.qwen3coder_tool_parser")
    return mod.Qwen3CoderToolParser(tok)


def _request(properties: dict):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": properties}}}
    return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "weather?"}], tools=[tool])


def _calls(info) -> list:
    return [{"name": c.function.name, "arguments": json.loads(c.function.arguments)} for c in info.tool_calls]


def coder_anyof() -> dict:
    """An anyOf-typed parameter (vllm#36032): an object argument must arrive as an object."""
    parser = _coder_parser(tokenizer())
    where = {
        "anyOf": [
            {"type": "object", "properties": {"city": {"type": "string"}}},
            {"type": "object", "properties": {"lat": {"type": "number"}}},
        ]
    }
    output = (
        '<tool_call>\n<function=get_weather>\n<parameter=location>\n{"city": "Paris"}\n</parameter>\n</function>\n</tool_call>'
    )
    if hasattr(parser, "tools") and parser.tools is None:  # 0.20+ reads the schema from the parser's tools
        parser.tools = _request({"location": where}).tools
    info = parser.extract_tool_calls(output, _request({"location": where}))
    return {"tools_called": info.tools_called, "calls": _calls(info)}


def coder_malformed() -> dict:
    """A truncated <parameter=...> without '>' (vllm#39771) next to a well-formed one."""
    parser = _coder_parser(tokenizer())
    req = _request({"city": {"type": "string"}, "unit": {"type": "string"}})
    if hasattr(parser, "tools") and parser.tools is None:
        parser.tools = req.tools
    output = (
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=unit</function>\n</tool_call>"
    )
    info = parser.extract_tool_calls(output, req)
    return {"tools_called": info.tools_called, "calls": _calls(info) if info.tools_called else [], "content": info.content}


def engine_whitespace() -> dict:
    """The parser engine's argument converter on an indented code argument (vllm#48753)."""
    mod = load("vllm.parser.qwen3")
    raw = "<parameter=old_string>\n    if x:\n        return 1\n</parameter>"
    return {"arguments": json.loads(mod._qwen3_arg_converter(raw, False))}


def shared_engine() -> dict:
    """qwen3 + qwen3_coder through the release's ParserManager (vllm#52830)."""
    mod = load("vllm.parser.parser_manager")
    from vllm.parser.engine.parser_engine import ParserEngine

    cls = mod.ParserManager.get_parser(tool_parser_name="qwen3_coder", reasoning_parser_name="qwen3", enable_auto_tools=True)
    return {"parser": cls.__name__, "raw_engine": issubclass(cls, ParserEngine)}


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    for arg in sys.argv[2:]:
        scenario, _, root = arg.partition("=")
        ROOT = Path(root)
        try:
            result = globals()[scenario]()
        except Exception as exc:  # a crash of the release's code is a result too
            result = {"error": f"{type(exc).__name__}: {exc}"}
        restore()
        print("RESULT " + json.dumps({"scenario": scenario, "root": root, **result}), flush=True)
