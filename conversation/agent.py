"""The agent's side of the conversation: one reply at a time, from the chat model through speech
synthesis to the speaker, held, paused, resumed, cut or withdrawn as the user's side decides.

Every turn has an id that goes with its text to the chat service and to speech synthesis, and
comes back on every delta, audio chunk and done: what arrives for a turn that is over is
dropped by id, never by timing. A turn is reported once when it is over, then dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from enum import Enum
from typing import IO

from conversation.calls import ToolRunner
from conversation.fillers import APOLOGY, without
from conversation.links import LlmLink, TtsLink
from conversation.links.llm import tool_set
from conversation.messages import AudioChunk, ReplyDelta, ReplyEnd, Speech, ToolCalls
from conversation.player import Output, ReplyPlayer
from conversation.settings import ConversationSettings
from conversation.tools import Tools
from conversation.turn import Turn
from foundation.audio import FRAME_MS

log = logging.getLogger(__name__)


class State(Enum):
    LISTENING = "listening"
    HEARING = "hearing you"
    THINKING = "thinking"
    SPEAKING = "speaking"


class Events:
    """What a front end is told, beyond ``show``; each does nothing here."""

    door = ""  # the front door's name in traces ("edge-client", "realtime", "audiosocket", ...)

    def speech_started(self, at_ms: float) -> None: ...
    def speech_stopped(self, at_ms: float) -> None: ...
    def reply_started(self, turn: Turn) -> None:
        """The user's turn is over and the reply to it begins (a held reply: when released)."""

    def reply_text(self, turn: Turn, text: str) -> None: ...
    def reply_done(self, turn: Turn) -> None:
        """Played, cut short (``interrupted``) or failed (``error``)."""

    def reported(self, line: dict[str, object]) -> None:
        """The turn's report line (also written to the report file); the turn is dropped after."""


class Agent:
    """Thinks and speaks one turn at a time; ``set_state`` and ``show`` reach the front end."""

    def __init__(
        self,
        settings: ConversationSettings,
        speaker: Output,
        clock: Callable[[], float],
        set_state: Callable[[State], None],
        show: Callable[[str, str], None],
        report: IO[str] | None,
        events: Events,
        tools: Tools | None = None,
    ) -> None:
        note = lambda text: show("note", text)  # noqa: E731
        self.tools = tools
        offered = tool_set(tools.specs(), tools.tool_choice) if tools is not None else None
        self.llm = LlmLink(
            settings.llm,
            settings.security,
            settings.system_prompt,
            settings.max_tokens,
            note,
            offered,
            settings.temperature,
        )
        self.tts = TtsLink(
            settings.tts, settings.security, settings.voice, speaker.sample_rate_hz, self._on_speech, note
        )
        self.calls = ToolRunner(lambda: self.tools, self.llm, self.tts, clock, note)
        self.speaker = speaker
        self.player = ReplyPlayer(speaker)
        self.turn: Turn | None = None  # the turn in progress
        # Whether the user is speaking: the state after a reply is HEARING, else LISTENING.
        self.user_speaking: Callable[[], bool] = lambda: False
        self._now = clock
        self._set_state = set_state
        self._show = show
        self._report = report
        self._events = events
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)

    def update(self, system_prompt: str | None = None, tools: Tools | None = None) -> None:
        """New instructions or tools, from the next reply on; the conversation so far stays.
        None leaves one as it is; tools with no specs take them all away."""
        self.tools = tools if tools is not None else self.tools
        offered = tool_set(tools.specs(), tools.tool_choice) if tools is not None else None
        self.llm.update(system_prompt, offered)

    def start(
        self,
        text: str,
        t_ms: dict[str, float],
        tentative: bool,
        withdrawn: list[dict[str, object]],
        judged: list[dict[str, object]],
    ) -> None:
        """A new turn on ``text``; a tentative one is held (its audio kept, not played) until released."""
        turn = Turn(text, t_ms, id=next(self._ids), withdrawn=withdrawn, judged=judged, tentative=tentative)
        if tentative:
            turn.t_ms["held"] = self._now()
        previous, self.turn = self._task, turn
        self.player.start(turn.id)
        if not tentative:
            turn.confirmed.set()
            self._events.reply_started(turn)
        self._task = asyncio.create_task(self._run(turn, previous))

    async def _run(self, turn: Turn, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # it ends first (its failure was its own, and reported)
        self._set_state(State.THINKING)
        try:
            async for event in self.llm.turn(turn.user_text, turn.id):
                if isinstance(event, ReplyDelta) and not turn.interrupted:
                    turn.t_ms.setdefault("first_token", self._now())
                    turn.agent_text += event.text
                    self._events.reply_text(turn, event.text)
                    self.tts.text(event.text, turn.id)
                elif isinstance(event, ToolCalls):
                    await self.calls.run(turn, event)
                elif isinstance(event, ReplyEnd) and event.error:
                    turn.error = f"the chat service failed: {event.error}"
                    if not (turn.agent_text.strip() or turn.interrupted):
                        turn.apology = APOLOGY  # no dead air: the user hears that it failed
                        self.tts.text(APOLOGY, turn.id)
            if not turn.interrupted:
                self.tts.flush(turn.id)
                await turn.synthesized.wait()
                await turn.confirmed.wait()
                self.speaker.flush_pending()
                while not turn.interrupted and (turn.paused or not self.player.drained):
                    await asyncio.sleep(FRAME_MS / 1000 / 3)
            if turn.retracted:
                self.llm.retract(turn.id)
            elif turn.interrupted and not turn.apology:
                # Cut while generating or while playing: the model's context keeps what was heard.
                self.llm.truncate(turn.heard_since_calls, turn.id)
        except Exception as exc:  # reported as this turn's failure; the conversation goes on
            log.exception("turn %d failed", turn.id)
            turn.error = f"the reply failed: {exc!r}"
        finally:
            self._finish(turn)

    def _finish(self, turn: Turn) -> None:
        self.player.end(turn.id)
        if self.turn is turn:
            self.turn = None
            self._set_state(State.HEARING if self.user_speaking() else State.LISTENING)
        if turn.retracted:
            return
        line = turn.report()
        said = str(line["agent_text"]) or turn.apology
        if turn.interrupted:
            said += " [interrupted]"
        if turn.error:
            said += f" [{turn.error}]"
        self._show("ai", said.strip())
        t = turn.t_ms
        if "first_audio" in t and "speech_end" in t:
            self._show(
                "latency",
                f"end of speech -> transcript {t['transcript_final'] - t['speech_end']:.0f} ms"
                f" -> first token {t.get('first_token', 0) - t['speech_end']:.0f} ms"
                f" -> first audio {t['first_audio'] - t['speech_end']:.0f} ms",
            )
        self._events.reply_done(turn)
        self._events.reported(line)
        if self._report is not None:
            self._report.write(json.dumps(line) + "\n")
            self._report.flush()

    def _on_speech(self, speech: Speech) -> None:
        """Synthesized audio of the turn in progress; anything else belongs to a turn that is over."""
        turn = self.turn
        if turn is None or speech.turn_id != turn.id:
            return
        if isinstance(speech, AudioChunk):
            if not turn.interrupted:
                self._played(turn, self.player.add(speech, turn.audible), bool(speech.pcm))
        elif not speech.cancelled and turn.early_flushes:
            turn.early_flushes -= 1  # words said while a tool works: the reply goes on
        elif not speech.cancelled:
            turn.synthesized.set()

    def _played(self, turn: Turn, ahead_ms: float | None, sound: bool = True) -> None:
        """Audio of ``turn`` was written; ``ahead_ms`` is set when it was its first."""
        if ahead_ms is not None:
            turn.t_ms["first_audio"] = self._now() + ahead_ms  # it plays after what is queued
        if sound and turn.audible:
            self._set_state(State.SPEAKING)

    def _play_rest(self, turn: Turn) -> None:
        """Play the reply from where it stopped (or from its start), and the rest as it comes."""
        if self.player.has_rest:
            self._played(turn, self.player.play_rest())
            if turn.synthesized.is_set():
                self.speaker.flush_pending()  # all of the reply is written: let its last samples out
        else:
            self._set_state(State.THINKING)

    def release(self, turn: Turn, judged: list[dict[str, object]]) -> None:
        """The user's turn did end: play what was held, and the rest as it comes."""
        turn.tentative = False
        turn.judged = judged
        turn.t_ms["end_of_turn"] = turn.t_ms["released"] = self._now()
        self._events.reply_started(turn)
        if turn.audible:
            self._play_rest(turn)
        turn.confirmed.set()

    def withdraw(self, turn: Turn) -> list[dict[str, object]]:
        """The user went on speaking: the held reply never happened (here, in the chat model's
        context, in synthesis). What the report says of it and of those it replaced."""
        turn.t_ms["withdrawn"] = self._now()
        turn.retracted = turn.interrupted = True
        self.llm.cancel(turn.id)
        self.tts.cancel(turn.id)
        turn.synthesized.set()
        turn.confirmed.set()
        self.turn = None
        self._set_state(State.HEARING)
        return [*turn.withdrawn, turn.withdrawal()]

    def pause(self, turn: Turn) -> None:
        """Sound from the user over the reply: stop playing until it proves to be words, or not."""
        self.player.stop(turn.audible)
        turn.paused, turn.paused_at = True, self._now()
        turn.t_ms["paused"] = turn.paused_at
        turn.t_ms.setdefault("barge_in", turn.paused_at)
        self._set_state(State.HEARING)

    def resume(self, turn: Turn) -> None:
        """It was not words: the reply goes on from where it stopped."""
        turn.paused = False
        turn.t_ms.pop("barge_in", None)
        turn.t_ms["resumed"] = self._now()
        self._play_rest(turn)

    def let_pass(self, text: str) -> bool:
        """Only a backchannel over the reply: it goes on (from where it paused), and it is no turn.
        False when the reply it was said over is done."""
        turn = self.turn
        if turn is None or turn.tentative or turn.interrupted:
            return False
        turn.backchannels.append(text)
        turn.t_ms["backchannel"] = self._now()
        if turn.paused:
            self.resume(turn)
        return True

    def barge_in(self) -> None:
        """The user said something: the reply ends where it was stopped, and what was heard stays."""
        turn = self.turn
        assert turn is not None
        if not turn.paused:
            self.pause(turn)
        turn.interrupted = True
        turn.heard_text = without(self.player.heard(), [*turn.fillers, turn.apology])
        if not turn.calling:  # else the call's result goes to the model first (``calls``)
            self.llm.cancel(turn.id)
        self.tts.cancel(turn.id)
        turn.synthesized.set()

    def cancel_task(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
