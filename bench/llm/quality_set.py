"""What a spoken assistant is asked: 30 everyday questions with the key fact a sensible
answer holds, and 20 requests that need one of five tools, with the call they need.

Used by ``bench.llm.quality`` (each embedded model) and ``bench.tools`` (through the
LLM service). A fact is a set of accepted spellings; an answer holds it when any of
them appears in its lower-cased text as a word (or its plural), a number on its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Question:
    text: str
    # Any one of these (lower case) in the answer is the fact.
    accepted: tuple[str, ...]


@dataclass(frozen=True)
class ToolRequest:
    text: str
    tool: str
    # Each argument's accepted values: strings compared lower-cased and stripped,
    # numbers by value.
    arguments: dict[str, tuple[Any, ...]]


QUESTIONS = [
    Question("What's the capital of Australia?", ("canberra",)),
    Question(
        "How many days are there in a leap year?",
        ("366", "three hundred sixty-six", "three hundred and sixty-six"),
    ),
    Question("What's the boiling point of water in Celsius?", ("100", "one hundred")),
    Question("Who wrote Romeo and Juliet?", ("shakespeare",)),
    Question("What's the largest planet in our solar system?", ("jupiter",)),
    Question("How many minutes are in an hour?", ("60", "sixty")),
    Question("What color do you get if you mix blue and yellow?", ("green",)),
    Question("What's the capital of Japan?", ("tokyo",)),
    Question("How many legs does a spider have?", ("8", "eight")),
    Question("What's the freezing point of water in Fahrenheit?", ("32", "thirty-two", "thirty two")),
    Question("Which ocean is the largest?", ("pacific",)),
    Question("What language do they speak in Brazil?", ("portuguese",)),
    Question("How many continents are there?", ("7", "seven")),
    Question("What's the chemical symbol for gold?", ("au",)),
    Question("Who painted the Mona Lisa?", ("leonardo", "da vinci")),
    Question("What's the tallest mountain in the world?", ("everest",)),
    Question("How many hours are in a day?", ("24", "twenty-four", "twenty four")),
    Question("What do bees make?", ("honey",)),
    Question("What's the capital of France?", ("paris",)),
    Question("What's twelve times twelve?", ("144", "one hundred forty-four", "one hundred and forty-four")),
    Question("Which planet is known as the red planet?", ("mars",)),
    Question("What gas do plants take in from the air?", ("carbon dioxide", "co2")),
    Question("How many sides does a hexagon have?", ("6", "six")),
    Question("What's the opposite of hot?", ("cold",)),
    Question("In which country are the pyramids of Giza?", ("egypt",)),
    Question("What's the currency of the United Kingdom?", ("pound", "sterling")),
    Question("How many weeks are in a year?", ("52", "fifty-two", "fifty two")),
    Question("What's the main ingredient of guacamole?", ("avocado",)),
    Question("Which animal is known as the king of the jungle?", ("lion",)),
    Question("What's the square root of eighty-one?", ("9", "nine")),
]


def _tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties)},
        },
    }


# OpenAI's tool shape, as a chat template and the service's ToolSet take it.
TOOLS = [
    _tool(
        "get_time",
        "The current time in a time zone.",
        {"timezone": {"type": "string", "description": "IANA time zone, e.g. Europe/London"}},
    ),
    _tool("get_weather", "Today's weather forecast for a city.", {"city": {"type": "string"}}),
    _tool("add", "Add two numbers.", {"a": {"type": "number"}, "b": {"type": "number"}}),
    _tool(
        "order_status",
        "Where a customer's order is, by its order number.",
        {"order_id": {"type": "string", "description": "the order number, digits only"}},
    ),
    _tool("set_timer", "Start a countdown timer.", {"minutes": {"type": "number"}}),
]

TOOL_REQUESTS = [
    ToolRequest("What time is it in Tokyo right now?", "get_time", {"timezone": ("asia/tokyo",)}),
    ToolRequest("Can you tell me the time in London?", "get_time", {"timezone": ("europe/london",)}),
    ToolRequest("What's the time in New York?", "get_time", {"timezone": ("america/new_york",)}),
    ToolRequest("What time is it in Paris?", "get_time", {"timezone": ("europe/paris",)}),
    ToolRequest("What's the weather like in Berlin today?", "get_weather", {"city": ("berlin",)}),
    ToolRequest("Is it going to rain in Seattle?", "get_weather", {"city": ("seattle",)}),
    ToolRequest("How's the weather in Madrid?", "get_weather", {"city": ("madrid",)}),
    ToolRequest("Give me the forecast for Chicago.", "get_weather", {"city": ("chicago",)}),
    ToolRequest("What's 17 plus 25?", "add", {"a": (17, 25), "b": (17, 25)}),
    ToolRequest("Add 340 and 1260 for me.", "add", {"a": (340, 1260), "b": (340, 1260)}),
    ToolRequest("What do 8 and 99 come to together?", "add", {"a": (8, 99), "b": (8, 99)}),
    ToolRequest("Can you add 2.5 and 4.25?", "add", {"a": (2.5, 4.25), "b": (2.5, 4.25)}),
    ToolRequest("Where is my order 48213?", "order_status", {"order_id": ("48213",)}),
    ToolRequest("Can you check the status of order number 1007?", "order_status", {"order_id": ("1007",)}),
    ToolRequest("Has order 55920 shipped yet?", "order_status", {"order_id": ("55920",)}),
    ToolRequest(
        "I'd like to know what's happening with my order, it's 30418.",
        "order_status",
        {"order_id": ("30418",)},
    ),
    ToolRequest("Set a timer for 10 minutes.", "set_timer", {"minutes": (10,)}),
    ToolRequest("Start a five minute timer please.", "set_timer", {"minutes": (5,)}),
    ToolRequest("Remind me in 25 minutes with a timer.", "set_timer", {"minutes": (25,)}),
    ToolRequest("Can you time 3 minutes for my eggs?", "set_timer", {"minutes": (3,)}),
]


def answer_holds(question: Question, answer: str) -> bool:
    text = answer.lower()
    for fact in question.accepted:
        if fact.isdigit():
            # A number on its own: "9" is not in "9.04" or "19".
            if re.search(rf"(?<![\d.]){fact}(?![\d]|\.\d)", text):
                return True
        elif re.search(rf"\b{re.escape(fact)}s?\b", text):  # a word, not "au" in "because"
            return True
    return False


def _matches(value: Any, accepted: tuple[Any, ...]) -> bool:
    for expected in accepted:
        if isinstance(expected, (int, float)):
            try:
                if float(value) == float(expected):
                    return True
            except (TypeError, ValueError):
                continue
        elif str(value).strip().lower() == expected:
            return True
    return False


def call_is_right(request: ToolRequest, name: str, arguments_json: str) -> bool:
    """The right tool with the right arguments (two numbers to add: in either order)."""
    if name != request.tool:
        return False
    try:
        arguments = json.loads(arguments_json)
    except json.JSONDecodeError:
        return False
    if not isinstance(arguments, dict) or set(arguments) != set(request.arguments):
        return False
    if request.tool == "add":
        try:
            given = sorted(float(arguments[k]) for k in ("a", "b"))
        except (TypeError, ValueError):
            return False
        return given == sorted(float(v) for v in request.arguments["a"])
    return all(_matches(arguments[k], accepted) for k, accepted in request.arguments.items())
