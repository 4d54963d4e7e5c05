"""Run by the vLLM environment's interpreter (never imported by servectl): print what the installed vLLM
registers, as one JSON line: {"vllm", "tool_parsers", "reasoning_parsers", "architectures"}."""

import json
import sys

_real_stdout = sys.stdout
sys.stdout = sys.stderr  # vLLM's logging must not mix with the JSON

import vllm  # noqa: E402

try:
    from vllm.tool_parsers import ToolParserManager
except ImportError:  # releases before the tool parsers moved out of the OpenAI entrypoint
    from vllm.entrypoints.openai.tool_parsers import ToolParserManager
from vllm.reasoning import ReasoningParserManager  # noqa: E402
from vllm.model_executor.models.registry import ModelRegistry  # noqa: E402

try:
    from vllm.model_executor.models.registry import _SPECULATIVE_DECODING_MODELS as _DRAFTS
except ImportError:
    _DRAFTS = {}

out = {
    "vllm": vllm.__version__,
    "tool_parsers": sorted(ToolParserManager.list_registered()),
    "reasoning_parsers": sorted(ReasoningParserManager.list_registered()),
    "architectures": sorted(set(ModelRegistry.get_supported_archs()) - set(_DRAFTS)),
}
_real_stdout.write(json.dumps(out) + "\n")
_real_stdout.flush()
