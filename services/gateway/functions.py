"""Function tools in OpenAI's shapes, for ``/v1/chat/completions`` and ``/v1/realtime``: what a client
declares is checked here, and the chat service checks each schema itself."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# The chat contract's rule for a tool's name (voice.llm.v1.Tool).
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHOICES = ("auto", "none", "required")


class FunctionError(ValueError):
    """A tool or tool choice the client cannot have meant; ``param`` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments (an object schema); empty: none

    @property
    def parameters_json(self) -> str:
        return json.dumps(self.parameters) if self.parameters else ""


def functions(tools: object, param: str, nested: bool) -> list[Function]:
    """The functions of a ``tools`` list: ``{"type": "function", "function": {...}}`` each
    (``nested``, as chat completions has it), or ``{"type": "function", "name": ...}`` (Realtime)."""
    if not isinstance(tools, list):
        raise FunctionError(f"`{param}` must be a list of function tools", param)
    found: list[Function] = []
    for index, tool in enumerate(tools):
        where = f"{param}[{index}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise FunctionError(f"{where} must be an object with type 'function' (the only kind here)", where)
        spec = tool.get("function") if nested else tool
        if nested:
            where = f"{where}.function"
        if not isinstance(spec, dict):
            raise FunctionError(f"{where} must be an object with the function's name and parameters", where)
        found.append(_function(spec, where))
    names = [f.name for f in found]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise FunctionError(
            f"`{param}` declares {', '.join(twice)} more than once: give each a name of its own", param
        )
    return found


def _function(spec: dict[str, Any], where: str) -> Function:
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FunctionError(
            f"{where}.name {name!r} is not a function name: use 1 to 64 letters, digits, '_' or '-'",
            f"{where}.name",
        )
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise FunctionError(f"{where}.description must be text", f"{where}.description")
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise FunctionError(
            f"{where}.parameters must be a JSON Schema object of type 'object' (the function's arguments), "
            f"not {json.dumps(parameters)[:80]}",
            f"{where}.parameters",
        )
    return Function(name, description, parameters)


def tool_choice(value: object, names: list[str], param: str) -> str:
    """The chat contract's tool choice: ``auto``, ``none``, ``required`` or a function's name, from
    the string or ``{"type": "function", "function": {"name": ...}}`` (or ``"name"``, Realtime)."""
    if value is None:
        return ""
    if isinstance(value, str) and value in _CHOICES:
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        inner = value.get("function")
        name = inner.get("name") if isinstance(inner, dict) else value.get("name")
        if name in names:
            return str(name)
        raise FunctionError(f"`{param}` names function {name!r}, which is not among the tools", param)
    raise FunctionError(
        f"`{param}` must be 'auto', 'none', 'required' or {{\"type\": \"function\", ...}} naming a tool",
        param,
    )
