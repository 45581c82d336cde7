"""One conversation: its history, the turn being generated, its tool calls and their
results, cancel, truncate and retract."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from services.common.errors import InvalidArgument
from services.common.metrics import STAGE_LATENCY
from services.llm.config import DEFAULT_SYSTEM_PROMPT
from services.llm.engine import CallDelta, Completion, Message, OnDelta, Options, Session, Tool

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 200
ROLES = ("system", "user", "assistant", "tool")
# Rounds of tool calls in one turn; past them the model is asked to answer without tools.
MAX_TOOL_ROUNDS = 4
# The result a call gets when the conversation goes on without one.
ABANDONED = "no result: the conversation went on without it"


@dataclass(frozen=True)
class Timings:
    time_to_first_token_ms: float
    total_ms: float
    tokens_per_second: float


@dataclass(frozen=True)
class TurnResult:
    index: int
    completion: Completion
    timings: Timings


# The chat template wraps each message in tokens of its own (SmolLM2: "<|im_start|>user\n" ...
# "<|im_end|>\n", 5 tokens): worth about this many characters of the budget. Without them a
# long talk of short turns outgrew the model's context (2061 tokens of 2048 after 68 turns).
MESSAGE_OVERHEAD_CHARS = 24


class Conversation:
    """History and generation for one stream; ``reply`` runs one turn at a time.

    Old turns are dropped in bulk when the history outgrows ``max_history_chars``
    (down to half of it), so the prompt prefix - and the local engine's KV cache -
    stays the same for many turns between drops.
    """

    def __init__(
        self,
        session: Session,
        system_prompt: str,
        options: Options,
        history: Sequence[Message] = (),
        *,
        max_turn_chars: int,
        max_history_chars: int,
    ) -> None:
        for message in history:
            if message.role not in ROLES:
                raise InvalidArgument(f"history message role {message.role!r} is not one of {ROLES}")
        self.session = session
        self.system = Message("system", system_prompt or DEFAULT_SYSTEM_PROMPT)
        self.options = options
        self.history: list[Message] = list(history)
        self.turns = 0
        self._max_turn_chars = max_turn_chars
        self._max_history_chars = max_history_chars
        self._first_kept = 0
        # The last generation's calls awaiting results, in order: id -> result (None: not yet).
        # A history that ends with calls still missing results awaits them: that turn goes
        # on when they come.
        self._calls: dict[str, Message | None] = _awaiting(self.history)
        self._rounds = 0  # rounds of calls in the turn under way
        if self._calls:
            self.turns = 1

    def update(
        self, system_prompt: str | None = None, tools: Sequence[Tool] | None = None, choice: str = ""
    ) -> None:
        """A new persona and/or tools (with ``choice``, checked), from the next generation on."""
        if system_prompt is not None:
            self.system = Message("system", system_prompt or DEFAULT_SYSTEM_PROMPT)
        if tools is not None:
            self.options = replace(self.options, tools=tuple(tools), tool_choice=choice or "auto")

    @property
    def awaiting(self) -> list[str]:
        """The ids of the calls still without a result."""
        return [call_id for call_id, result in self._calls.items() if result is None]

    def prompt(self, user_text: str) -> list[Message]:
        """The messages the engine sees for a new user turn."""
        self._drop_old_turns(len(user_text))
        return [self.system, *self.history[self._first_kept :], Message("user", user_text)]

    @property
    def next_index(self) -> int:
        """The index the next turn will have (turns count from 1)."""
        return self.turns + 1

    async def reply(self, user_text: str, on_delta: OnDelta, cancel: threading.Event) -> TurnResult:
        """Generate the reply to ``user_text``, streaming it into ``on_delta`` (called from
        a worker thread) until done or ``cancel`` is set; the turn joins the history,
        cancelled or not."""
        self.turns += 1
        index = self.turns
        text = user_text.strip()
        if not text:
            raise InvalidArgument("the user turn is empty; send the words the user said")
        if len(text) > self._max_turn_chars:
            raise InvalidArgument(
                f"the user turn has {len(text)} characters, more than the limit of {self._max_turn_chars}"
            )
        self._close_calls(ABANDONED)
        self._rounds = 0
        messages = self.prompt(text)
        completion, timings = await self._generate(messages, on_delta, cancel)
        self.history += [Message("user", text), _reply(completion)]
        return TurnResult(index, completion, timings)

    def add_result(self, call_id: str, output: str, is_error: bool) -> bool:
        """Keep a call's result; True when every call of the last generation has one."""
        if call_id not in self._calls:
            known = ", ".join(self.awaiting) or "none"
            raise InvalidArgument(f"no tool call {call_id!r} awaits a result (awaiting: {known})")
        if self._calls[call_id] is not None:
            raise InvalidArgument(f"tool call {call_id!r} has its result already")
        content = json.dumps({"error": output}) if is_error else output
        self._calls[call_id] = Message("tool", content, tool_call_id=call_id)
        return not self.awaiting

    async def resume(self, on_delta: OnDelta, cancel: threading.Event) -> TurnResult:
        """Go on with the turn whose calls all have their results (or with a history that
        ends with results): the model answers with them, or calls again."""
        self._close_calls(ABANDONED)
        messages = [self.system, *self.history[self._first_kept :]]
        completion, timings = await self._generate(messages, on_delta, cancel)
        self.history.append(_reply(completion))
        return TurnResult(self.turns, completion, timings)

    async def _generate(
        self, messages: list[Message], on_delta: OnDelta, cancel: threading.Event
    ) -> tuple[Completion, Timings]:
        options = self.options
        if self._rounds >= MAX_TOOL_ROUNDS and options.tools:
            log.info("tool rounds used up; answering without tools", extra={"rounds": self._rounds})
            options = replace(options, tool_choice="none")
        elif self._rounds and options.tool_choice not in ("auto", "none"):
            # "required" or a tool's name forces the turn's first call, not every one after it.
            options = replace(options, tool_choice="auto")
        started = time.monotonic()
        first: float | None = None

        def delta(piece: str | CallDelta) -> None:
            nonlocal first
            if first is None:
                first = time.monotonic()
            on_delta(piece)

        try:
            completion = await asyncio.to_thread(self.session.generate, messages, options, delta, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the caller went away: stop the worker thread's generation too
            raise
        ended = time.monotonic()
        if completion.tool_calls:
            self._rounds += 1
            self._calls = {call.id: None for call in completion.tool_calls}
        timings = _timings(started, first, ended, completion.completion_tokens)
        STAGE_LATENCY.labels("llm", "first_token").observe(timings.time_to_first_token_ms / 1000)
        STAGE_LATENCY.labels("llm", "reply").observe(timings.total_ms / 1000)
        return completion, timings

    def _close_calls(self, missing: str) -> None:
        """Move the last generation's results into the history, in the order of its calls;
        a call without one gets ``missing`` as an error result."""
        for call_id, result in self._calls.items():
            self.history.append(
                result or Message("tool", json.dumps({"error": missing}), tool_call_id=call_id)
            )
        self._calls = {}

    def truncate(self, heard_text: str) -> bool:
        """Cut the last turn's spoken text to what the user heard (its calls and results
        stay); False if there is no reply."""
        start = max((i for i, m in enumerate(self.history) if m.role == "user"), default=0)
        replies = [i for i in range(start, len(self.history)) if self.history[i].role == "assistant"]
        if not replies:
            return False
        if len(replies) == 1:
            self.history[replies[0]] = replace(self.history[replies[0]], content=heard_text)
            return True
        # A turn with calls spoke in pieces: the heard text covers them in order.
        heard = heard_text.strip()
        for i in replies:
            spoken = self.history[i].content.strip()
            kept = spoken if spoken and heard.startswith(spoken) else heard
            heard = heard[len(kept) :].strip()
            self.history[i] = replace(self.history[i], content=kept)
        return True

    def retract(self) -> bool:
        """Forget the last user turn and all after it (replies, calls, results); False if there is none."""
        for i in range(len(self.history) - 1, self._first_kept - 1, -1):
            if self.history[i].role == "user":
                del self.history[i:]
                self._calls = {}
                return True
        return False

    def close(self) -> None:
        self.session.close()

    def _drop_old_turns(self, incoming_chars: int) -> None:
        kept = self.history[self._first_kept :]
        size = incoming_chars + MESSAGE_OVERHEAD_CHARS + sum(map(prompt_chars, kept))
        if size <= self._max_history_chars:
            return
        # Drop whole exchanges from the front until under half the budget.
        while size > self._max_history_chars // 2 and self._first_kept < len(self.history):
            size -= prompt_chars(self.history[self._first_kept])
            self._first_kept += 1
            while self._first_kept < len(self.history) and self.history[self._first_kept].role != "user":
                size -= prompt_chars(self.history[self._first_kept])
                self._first_kept += 1
        log.info("dropped old turns from the prompt", extra={"first_kept": self._first_kept})


def prompt_chars(message: Message) -> int:
    """What ``message`` costs the prompt, in characters: its words, its calls and its chat
    template's marks."""
    calls = sum(len(c.name) + len(c.arguments) + MESSAGE_OVERHEAD_CHARS for c in message.tool_calls)
    return len(message.content) + calls + MESSAGE_OVERHEAD_CHARS


def _awaiting(history: list[Message]) -> dict[str, Message | None]:
    """The calls of ``history``'s last assistant message when some still lack a result: each
    with its result (taken out of ``history``), or None. Empty when every call has one."""
    last = max((i for i, m in enumerate(history) if m.role == "assistant"), default=-1)
    if last < 0 or not history[last].tool_calls:
        return {}
    calls: dict[str, Message | None] = {call.id: None for call in history[last].tool_calls}
    results = history[last + 1 :]
    if len(results) >= len(calls) or any(m.role != "tool" or m.tool_call_id not in calls for m in results):
        return {}
    for result in results:
        calls[result.tool_call_id] = result
    del history[last + 1 :]
    return calls


def _reply(completion: Completion) -> Message:
    return Message("assistant", completion.text, completion.tool_calls)


def _timings(started: float, first: float | None, ended: float, tokens: int) -> Timings:
    first_at = first if first is not None else ended
    decode_s = ended - first_at
    rate = (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0
    return Timings((first_at - started) * 1000, (ended - started) * 1000, rate)
