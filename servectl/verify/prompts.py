"""Request pieces the quick checks, the gates and the soak share, so they ask the server the same things."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the OpenAI SDK's request types (checked, never imported at run time here)
    from openai.types.chat import ChatCompletionToolParam

WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_PROMPT = "What is the weather in Paris? Use the get_weather tool."
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}


def reasoning_text(message: dict) -> str:
    """The reasoning of a reply message or stream delta ("" when none): vLLM >= 0.2x puts it in
    `reasoning`, older releases in `reasoning_content`."""
    return message.get("reasoning") or message.get("reasoning_content") or ""
