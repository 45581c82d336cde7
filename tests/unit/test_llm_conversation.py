"""Conversation history, truncate, dropping old turns, and turn validation."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from services.common.errors import InvalidArgument
from services.llm.config import DEFAULT_SYSTEM_PROMPT
from services.llm.conversation import MESSAGE_OVERHEAD_CHARS, Conversation
from services.llm.engine import Completion, Finish, Message, OnDelta, Options


class EchoSession:
    """Replies with the user's last message, word by word."""

    def __init__(self) -> None:
        self.prompts: list[list[Message]] = []

    def generate(
        self, messages: Sequence[Message], options: Options, on_delta: OnDelta, cancel: threading.Event
    ) -> Completion:
        self.prompts.append(list(messages))
        words = messages[-1].content.split()
        if cancel.is_set():
            return Completion("", Finish.CANCELLED, 0, 0, "echo")
        for word in words:
            on_delta(word + " ")
        return Completion(" ".join(words) + " ", Finish.STOP, len(messages), len(words), "echo")

    def close(self) -> None:
        pass


def conversation(
    session: EchoSession, max_turn_chars: int = 100, max_history_chars: int = 1000
) -> Conversation:
    return Conversation(
        session,
        "",
        Options("", 0.7, 200),
        max_turn_chars=max_turn_chars,
        max_history_chars=max_history_chars,
    )


async def reply(chat: Conversation, text: str) -> tuple[list[str], Completion]:
    deltas: list[str] = []
    result = await chat.reply(text, lambda d: deltas.append(str(d)), threading.Event())
    return deltas, result.completion


async def test_history_and_default_persona() -> None:
    session = EchoSession()
    chat = conversation(session)
    deltas, completion = await reply(chat, "hello there")
    assert deltas == ["hello ", "there "] and completion.finish is Finish.STOP
    await reply(chat, "again")
    assert session.prompts[-1] == [
        Message("system", DEFAULT_SYSTEM_PROMPT),
        Message("user", "hello there"),
        Message("assistant", "hello there "),
        Message("user", "again"),
    ]
    assert chat.turns == 2 and chat.next_index == 3


async def test_truncate_replaces_the_last_reply() -> None:
    session = EchoSession()
    chat = conversation(session)
    assert not chat.truncate("nothing said yet")
    await reply(chat, "one two three")
    assert chat.truncate("one")
    await reply(chat, "next")
    assert session.prompts[-1][-2] == Message("assistant", "one")


async def test_retract_forgets_the_last_turn() -> None:
    session = EchoSession()
    chat = conversation(session)
    assert not chat.retract()
    await reply(chat, "first")
    await reply(chat, "second, cut")
    assert chat.retract()
    await reply(chat, "second, whole")
    assert [m.content.strip() for m in session.prompts[-1][1:]] == ["first", "first", "second, whole"]


async def test_bad_turns_are_rejected_and_counted() -> None:
    chat = conversation(EchoSession(), max_turn_chars=10)
    with pytest.raises(InvalidArgument, match="empty"):
        await reply(chat, "   ")
    with pytest.raises(InvalidArgument, match="limit of 10"):
        await reply(chat, "x" * 11)
    assert chat.turns == 2 and chat.history == []


async def test_old_turns_are_dropped_in_bulk() -> None:
    session = EchoSession()
    chat = conversation(session, max_history_chars=400)
    for i in range(12):
        await reply(chat, f"message number {i:02d}")  # 17 characters, echoed with 18
    prompts = [p[1:] for p in session.prompts]  # without the system prompt
    # Each message costs its words and its chat template's marks.
    sizes = [sum(len(m.content) + MESSAGE_OVERHEAD_CHARS for m in p) for p in prompts]
    assert max(sizes) <= 400 and min(sizes) == 17 + MESSAGE_OVERHEAD_CHARS
    assert all(p[0].role == "user" for p in prompts)
    # Between drops the prompt only grows, so its prefix (and the KV cache) stays valid.
    drops = [i for i in range(1, len(prompts)) if prompts[i][0] != prompts[i - 1][0]]
    assert 1 <= len(drops) <= 4
    assert prompts[-1][-1] == Message("user", "message number 11")


async def test_a_turn_cancelled_before_it_starts() -> None:
    chat = conversation(EchoSession())
    cancel = threading.Event()
    cancel.set()
    result = await chat.reply("hello", lambda _: None, cancel)
    assert result.completion.finish is Finish.CANCELLED
    assert result.timings.tokens_per_second == 0
    assert chat.history == [Message("user", "hello"), Message("assistant", "")]
