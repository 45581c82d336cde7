"""One conversation: its history, the turn being generated, cancel, truncate and retract."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.common.metrics import STAGE_LATENCY
from services.llm.config import DEFAULT_SYSTEM_PROMPT
from services.llm.engine import Completion, Message, OnDelta, Options, Session

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 200
ROLES = ("system", "user", "assistant")


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
        messages = self.prompt(text)
        started = time.monotonic()
        first: float | None = None

        def delta(piece: str) -> None:
            nonlocal first
            if first is None:
                first = time.monotonic()
            on_delta(piece)

        try:
            completion = await asyncio.to_thread(self.session.generate, messages, self.options, delta, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the caller went away: stop the worker thread's generation too
            raise
        ended = time.monotonic()
        self.history += [Message("user", text), Message("assistant", completion.text)]
        timings = _timings(started, first, ended, completion.completion_tokens)
        STAGE_LATENCY.labels("llm", "first_token").observe(timings.time_to_first_token_ms / 1000)
        STAGE_LATENCY.labels("llm", "reply").observe(timings.total_ms / 1000)
        return TurnResult(index, completion, timings)

    def truncate(self, heard_text: str) -> bool:
        """Replace the last assistant message with what the user heard; False if there is none."""
        for i in range(len(self.history) - 1, -1, -1):
            if self.history[i].role == "assistant":
                self.history[i] = Message("assistant", heard_text)
                return True
        return False

    def retract(self) -> bool:
        """Forget the last user turn and the reply after it; False if there is none."""
        for i in range(len(self.history) - 1, self._first_kept - 1, -1):
            if self.history[i].role == "user":
                del self.history[i:]
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
    """What ``message`` costs the prompt, in characters: its words and its chat template's marks."""
    return len(message.content) + MESSAGE_OVERHEAD_CHARS


def _timings(started: float, first: float | None, ended: float, tokens: int) -> Timings:
    first_at = first if first is not None else ended
    decode_s = ended - first_at
    rate = (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0
    return Timings((first_at - started) * 1000, (ended - started) * 1000, rate)
