"""A conversation's tool calls and results: continuing the turn, the bound on rounds, the
history's calls and results under retract, truncate and the budget, and the tool checks."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import pytest

from services.common.errors import InvalidArgument
from services.llm.conversation import MAX_TOOL_ROUNDS, Conversation, prompt_chars
from services.llm.engine import Completion, Finish, Message, OnDelta, Options, ToolCall
from services.llm.tools import arguments_error, check_tools, parse_tool

LOOKUP = parse_tool(
    "lookup", "Look a word up", json.dumps({"type": "object", "properties": {"q": {"type": "string"}}})
)


class CallingSession:
    """Calls ``lookup`` whenever tools are allowed, else answers with the last result."""

    def __init__(self) -> None:
        self.seen: list[tuple[list[Message], Options]] = []
        self.calls = 0

    def generate(
        self, messages: Sequence[Message], options: Options, on_delta: OnDelta, cancel: threading.Event
    ) -> Completion:
        self.seen.append((list(messages), options))
        if options.tools and options.tool_choice != "none":
            self.calls += 1
            call = ToolCall(f"call_{self.calls}", "lookup", json.dumps({"q": "x"}))
            return Completion("Let me look.", Finish.TOOL_CALLS, 1, 1, "fake", (call,))
        on_delta("done")
        return Completion(f"done: {messages[-1].content}", Finish.STOP, 1, 1, "fake")

    def close(self) -> None:
        pass


def conversation(session: CallingSession, max_history_chars: int = 10_000) -> Conversation:
    chat = Conversation(
        session, "", Options("", 0.0, 50), max_turn_chars=500, max_history_chars=max_history_chars
    )
    chat.update(tools=[LOOKUP], choice="auto")
    return chat


async def call_round(chat: Conversation, result: str = "found") -> Completion:
    [call_id] = chat.awaiting
    assert chat.add_result(call_id, result, is_error=False)
    return (await chat.resume(lambda _: None, threading.Event())).completion


async def test_results_continue_the_turn_and_rounds_are_bounded() -> None:
    session = CallingSession()
    chat = conversation(session)
    first = await chat.reply("look it up", lambda _: None, threading.Event())
    assert first.completion.finish is Finish.TOOL_CALLS and first.index == 1
    for _ in range(MAX_TOOL_ROUNDS - 1):
        assert (await call_round(chat)).finish is Finish.TOOL_CALLS
    last = await call_round(chat, "the answer")
    # Past the bound the model is asked without tools: it answers.
    assert last.finish is Finish.STOP and session.seen[-1][1].tool_choice == "none"
    assert session.calls == MAX_TOOL_ROUNDS and chat.turns == 1
    roles = [m.role for m in chat.history]
    assert roles == ["user", *["assistant", "tool"] * MAX_TOOL_ROUNDS, "assistant"]
    assert chat.history[-2] == Message("tool", "the answer", tool_call_id=f"call_{MAX_TOOL_ROUNDS}")
    # A new turn has its rounds again.
    await chat.reply("again", lambda _: None, threading.Event())
    assert session.seen[-1][1].tool_choice == "auto"


async def test_a_forced_choice_forces_only_the_first_call() -> None:
    session = CallingSession()
    chat = conversation(session)
    chat.update(tools=[LOOKUP], choice="lookup")
    await chat.reply("look it up", lambda _: None, threading.Event())
    await call_round(chat)
    assert [options.tool_choice for _, options in session.seen] == ["lookup", "auto"]


async def test_unknown_or_answered_call_ids_are_refused() -> None:
    chat = conversation(CallingSession())
    with pytest.raises(InvalidArgument, match="no tool call 'nope' awaits a result"):
        chat.add_result("nope", "x", is_error=False)
    await chat.reply("look it up", lambda _: None, threading.Event())
    [call_id] = chat.awaiting
    chat.add_result(call_id, "oops", is_error=True)
    with pytest.raises(InvalidArgument, match="has its result already"):
        chat.add_result(call_id, "again", is_error=False)
    await chat.resume(lambda _: None, threading.Event())
    assert chat.history[2] == Message("tool", json.dumps({"error": "oops"}), tool_call_id=call_id)


async def test_a_new_turn_closes_unanswered_calls() -> None:
    chat = conversation(CallingSession())
    await chat.reply("look it up", lambda _: None, threading.Event())
    [call_id] = chat.awaiting
    chat.update(tools=[], choice="auto")
    await chat.reply("never mind", lambda _: None, threading.Event())
    assert [m.role for m in chat.history] == ["user", "assistant", "tool", "user", "assistant"]
    assert chat.history[2].tool_call_id == call_id and "error" in json.loads(chat.history[2].content)


async def test_a_history_ending_with_calls_awaits_their_results() -> None:
    """A client that keeps the conversation itself (chat completions) sends the calls with the
    results so far: the turn goes on when the last one comes, the results in the calls' order."""
    calls = (ToolCall("a", "lookup", "{}"), ToolCall("b", "lookup", "{}"))
    asked = [Message("user", "look both up"), Message("assistant", "", calls)]
    session = CallingSession()
    chat = Conversation(
        session,
        "",
        Options("", 0.0, 50),
        [*asked, Message("tool", "B", tool_call_id="b")],
        max_turn_chars=500,
        max_history_chars=10_000,
    )
    assert chat.awaiting == ["a"] and chat.history == asked
    assert chat.add_result("a", "A", is_error=False)
    answer = await chat.resume(lambda _: None, threading.Event())
    assert answer.completion.text == "done: B" and answer.index == 1
    assert [m.content for m in session.seen[-1][0][-2:]] == ["A", "B"]
    # Every call answered: nothing awaits, the history is as given.
    whole = [*asked, Message("tool", "A", tool_call_id="a"), Message("tool", "B", tool_call_id="b")]
    done = Conversation(
        session, "", Options("", 0.0, 50), whole, max_turn_chars=500, max_history_chars=10_000
    )
    assert not done.awaiting and done.history == whole


async def test_retract_removes_the_turn_with_its_calls_and_results() -> None:
    chat = conversation(CallingSession())
    chat.update(tools=[], choice="auto")
    await chat.reply("hello", lambda _: None, threading.Event())
    chat.update(tools=[LOOKUP], choice="auto")
    await chat.reply("look it up", lambda _: None, threading.Event())
    assert chat.retract()
    assert [m.role for m in chat.history] == ["user", "assistant"] and not chat.awaiting


async def test_truncate_cuts_spoken_text_and_keeps_calls() -> None:
    session = CallingSession()
    chat = conversation(session)
    await chat.reply("look it up", lambda _: None, threading.Event())
    chat.update(tools=[], choice="auto")
    await call_round(chat, "42")
    spoken = chat.history[1].content + " " + chat.history[-1].content
    assert chat.truncate(spoken[: len(chat.history[1].content) + 4])
    assert chat.history[1].content == "Let me look." and chat.history[1].tool_calls
    assert chat.history[-1].content == "don"
    assert chat.history[2].role == "tool" and chat.history[2].content == "42"


def test_the_budget_counts_calls() -> None:
    call = ToolCall("call_1", "lookup", json.dumps({"q": "a long query " * 10}))
    assert prompt_chars(Message("assistant", "", (call,))) > len(call.arguments)


def test_tool_checks_name_what_is_wrong() -> None:
    with pytest.raises(InvalidArgument, match="tool name 'bad name'"):
        parse_tool("bad name", "", "")
    with pytest.raises(InvalidArgument, match="tool 'x': parameters_json is not JSON"):
        parse_tool("x", "", "{")
    with pytest.raises(InvalidArgument, match="tool 'x': parameters_json must be an object schema"):
        parse_tool("x", "", '{"type": "string"}')
    with pytest.raises(InvalidArgument, match="tool 'x': the parameters schema is invalid at properties/q"):
        parse_tool("x", "", '{"type": "object", "properties": {"q": {"type": "text"}}}')
    with pytest.raises(InvalidArgument, match="tool_choice 'other' is neither"):
        check_tools([LOOKUP], "other")
    with pytest.raises(InvalidArgument, match="unique"):
        check_tools([LOOKUP, LOOKUP], "auto")
    assert check_tools([LOOKUP], "") == "auto" and check_tools([LOOKUP], "lookup") == "lookup"
    assert arguments_error(LOOKUP, '{"q": 1}') is not None and arguments_error(LOOKUP, '{"q": "a"}') is None
