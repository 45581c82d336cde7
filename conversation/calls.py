"""A turn's tool calls: run through the conversation's ``Tools`` with its timeout, at most
``MAX_CALLS_PER_TURN`` in a turn, each result (or error) sent back to the chat model, which then
goes on with the same turn. A failure or a timeout is an error result; the conversation goes on.

While a call is slow the agent says something: the model's words before the call where it wrote
some (spoken at once), else a filler after ``FILLER_AFTER_S`` (``fillers``).

A held reply calls nothing until the user's turn is over (a withdrawn one never calls). When the
user speaks over a call (the filler stops, the user is heard at once), the call is not cancelled:
it runs to its end (within its timeout), its result goes into the model's history, and the turn
ends there with nothing more said; the next reply can use the result. A call may have done
something (booked, sent), and the model then knows it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from conversation.fillers import FILLER_AFTER_S, Fillers
from conversation.links import LlmLink, TtsLink
from conversation.messages import ToolCalls
from conversation.tools import MAX_CALLS_PER_TURN, ToolCall, Tools, fillers_for
from conversation.turn import Turn

log = logging.getLogger(__name__)

# Longest result shown to the front end (the model gets all of it).
_SHOWN_CHARS = 200


class ToolRunner:
    """Runs the calls of the turn in progress for the agent."""

    def __init__(
        self,
        tools: Callable[[], Tools | None],
        llm: LlmLink,
        tts: TtsLink,
        clock: Callable[[], float],
        note: Callable[[str], None],
    ) -> None:
        self._tools = tools
        self._llm = llm
        self._tts = tts
        self._now = clock
        self._note = note
        self.fillers = Fillers()

    async def run(self, turn: Turn, called: ToolCalls) -> None:
        """Run ``called`` (all at once) and send their results; the turn goes on in the chat model."""
        await turn.confirmed.wait()  # a held reply acts only once the user's turn is over
        if turn.retracted:
            return  # withdrawn: its turn ended in the chat service too
        tools = self._tools()
        turn.calling, turn.before_calls = True, turn.agent_text
        filler: asyncio.TimerHandle | None = None
        if called.text.strip() and not turn.interrupted:
            self.fillers.said(called.text)
            self._speak_now(turn)  # the model's own words before the call: heard while it works
        elif tools is not None and all(fillers_for(tools, call.name) for call in called.calls):
            filler = asyncio.get_running_loop().call_later(FILLER_AFTER_S, self._filler, turn)
        try:
            await asyncio.gather(*(self._call(turn, tools, call) for call in called.calls))
        finally:
            turn.calling = False
            if filler is not None:
                filler.cancel()
        if turn.interrupted:
            self._llm.cancel(turn.id)  # the results are in its history; nothing more is said
        elif turn.refused_calls > MAX_CALLS_PER_TURN:
            turn.error = f"the model kept calling tools past {MAX_CALLS_PER_TURN} calls"
            self._llm.cancel(turn.id)

    async def _call(self, turn: Turn, tools: Tools | None, call: ToolCall) -> None:
        started = time.monotonic()
        record: dict[str, object] = {"name": call.name, "arguments": call.arguments}
        is_error = True
        if tools is None:
            output = "no tools are available"
        elif len(turn.calls) >= MAX_CALLS_PER_TURN:
            turn.refused_calls += 1
            output = f"not called: at most {MAX_CALLS_PER_TURN} tool calls a turn; answer with what you have"
        else:
            turn.calls.append(record)  # before any wait: the calls of one step count in order
            try:
                output = await asyncio.wait_for(tools.call(call), tools.timeout_s)
                is_error = False
            except TimeoutError:
                output = f"{call.name} did not answer within {tools.timeout_s:g} s"
            except Exception as exc:  # told to the model; the conversation goes on
                log.info("tool %s failed: %r", call.name, exc)
                output = f"{call.name} failed: {exc}"
        ms = round((time.monotonic() - started) * 1000)
        record.update(result=output, ms=ms)
        if is_error:
            record["error"] = True
        shown = output if len(output) <= _SHOWN_CHARS else output[:_SHOWN_CHARS] + "..."
        failed = " (failed)" if is_error else ""
        self._note(f"tool {call.name}({json.dumps(call.arguments)}) -> {shown}{failed} in {ms} ms")
        self._llm.tool_result(call.id, output, is_error)

    def _filler(self, turn: Turn) -> None:
        """A call is slow: say something while it works."""
        if not turn.calling or turn.interrupted:
            return
        phrase = self.fillers.next()
        turn.fillers.append(phrase)
        turn.t_ms.setdefault("filler", self._now())
        self._tts.text(f"{phrase} ", turn.id)
        self._speak_now(turn)

    def _speak_now(self, turn: Turn) -> None:
        """Synthesize the reply's text so far now; its done is not the reply's end."""
        turn.early_flushes += 1
        self._tts.flush(turn.id)
