"""Tools the model may call: their checks, the checks of a call's arguments, and the
shape of tools, calls and results in an OpenAI-style chat request."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

import jsonschema

from services.common.errors import InvalidArgument
from services.llm.engine import Message, Tool, ToolCall

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHOICES = ("auto", "none", "required")
# The schema of a tool that takes no arguments.
NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}


def parse_tool(name: str, description: str, parameters_json: str) -> Tool:
    """A checked tool; InvalidArgument names the tool and what is wrong with it."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(f"tool name {name!r} must be 1 to 64 letters, digits, '_' or '-'")
    if not parameters_json.strip():
        return Tool(name, description, NO_ARGUMENTS)
    try:
        schema = json.loads(parameters_json)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"tool {name!r}: parameters_json is not JSON: {exc}") from exc
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise InvalidArgument(f'tool {name!r}: parameters_json must be an object schema ("type": "object")')
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "the top level"
        raise InvalidArgument(
            f"tool {name!r}: the parameters schema is invalid at {where}: {exc.message}"
        ) from exc
    return Tool(name, description, schema)


def check_tools(tools: Sequence[Tool], choice: str) -> str:
    """The tool choice, checked against ``tools`` ("" means "auto")."""
    names = [tool.name for tool in tools]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise InvalidArgument(f"tool names must be unique; given more than once: {', '.join(duplicates)}")
    choice = choice or "auto"
    if choice == "required" and not tools:
        raise InvalidArgument('tool_choice "required" needs at least one tool')
    if choice not in CHOICES and choice not in names:
        raise InvalidArgument(
            f"tool_choice {choice!r} is neither auto, none nor required, nor one of the tools "
            f"({', '.join(names) or 'none given'})"
        )
    return choice


def arguments_error(tool: Tool, arguments: str) -> str | None:
    """Why ``arguments`` (JSON text) do not fit ``tool``'s schema; None when they do."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return f"the arguments of {tool.name} are not JSON: {exc}"
    validator = jsonschema.validators.validator_for(tool.parameters, default=jsonschema.Draft202012Validator)
    error = jsonschema.exceptions.best_match(validator(tool.parameters).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "the top level"
    return f"the arguments of {tool.name} do not fit its schema at {where}: {error.message}"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def api_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """``tools`` as chat-completions APIs and chat templates take them."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


def api_choice(choice: str) -> str | dict[str, Any]:
    if choice in CHOICES:
        return choice
    return {"type": "function", "function": {"name": choice}}


def api_messages(messages: Sequence[Message], *, parsed_arguments: bool = False) -> list[dict[str, Any]]:
    """``messages`` as chat-completions APIs take them; chat templates want each call's
    arguments as an object (``parsed_arguments``), not as JSON text."""
    out: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [_api_call(call, parsed_arguments) for call in message.tool_calls]
        if message.role == "tool":
            item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out


def _api_call(call: ToolCall, parsed: bool) -> dict[str, Any]:
    arguments: Any = call.arguments
    if parsed:
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(call.arguments or "{}")
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}
