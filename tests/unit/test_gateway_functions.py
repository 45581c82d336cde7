"""Function tools in OpenAI's shapes, as the gateway's doors read them."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.functions import Function, FunctionError, functions, tool_choice

CITY: dict[str, Any] = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"name": "get_weather", "description": "The weather in a city.", "parameters": CITY}


def test_chat_and_realtime_shapes_give_the_same_function() -> None:
    nested = functions([{"type": "function", "function": WEATHER}], "tools", nested=True)
    flat = functions([{"type": "function", **WEATHER}], "session.tools", nested=False)
    assert nested == flat == [Function("get_weather", "The weather in a city.", CITY)]
    assert '"city"' in nested[0].parameters_json
    assert functions([{"type": "function", "name": "now"}], "t", nested=False)[0].parameters_json == ""


@pytest.mark.parametrize(
    ("tools", "param", "says"),
    [
        ({"type": "function"}, "tools", "must be a list"),
        ([{"type": "code_interpreter"}], "tools[0]", "type 'function'"),
        ([{"type": "function", "function": "get_weather"}], "tools[0].function", "must be an object"),
        (
            [{"type": "function", "function": {"name": "get weather"}}],
            "tools[0].function.name",
            "letters, digits",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
            "tools[0].function.parameters",
            "of type 'object'",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": ["city"]}}],
            "tools[0].function.parameters",
            "JSON Schema object",
        ),
        ([{"type": "function", "function": WEATHER}] * 2, "tools", "get_weather more than once"),
    ],
)
def test_a_bad_tool_is_named_with_what_to_do(tools: object, param: str, says: str) -> None:
    with pytest.raises(FunctionError, match=says) as caught:
        functions(tools, "tools", nested=True)
    assert caught.value.param == param


def test_tool_choice_in_either_shape() -> None:
    names = ["get_weather"]
    assert tool_choice(None, names, "tool_choice") == ""
    assert tool_choice("required", names, "tool_choice") == "required"
    chosen = {"type": "function", "function": {"name": "get_weather"}}
    assert tool_choice(chosen, names, "tool_choice") == "get_weather"
    assert tool_choice({"type": "function", "name": "get_weather"}, names, "tool_choice") == "get_weather"
    with pytest.raises(FunctionError, match="not among the tools"):
        tool_choice({"type": "function", "name": "book_flight"}, names, "tool_choice")
    with pytest.raises(FunctionError, match="'auto', 'none', 'required'"):
        tool_choice("sometimes", names, "tool_choice")
