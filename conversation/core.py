"""The conversation: a small state machine over the user's audio, the three links and the reply's output.

    LISTENING --speech--> HEARING --end of speech--> (final transcript) THINKING
    THINKING --first audio--> SPEAKING --reply played--> LISTENING
    THINKING/SPEAKING --voiced sound past the barge-in time--> paused
    paused --words transcribed--> HEARING (turn cut short, the model keeps what was heard)
    paused --quiet, no words (a cough, a door)--> the reply goes on where it stopped
    paused --only a backchannel ("mm-hmm", "yeah")--> the reply goes on; it is no turn

Every turn has an id that goes with its text to the chat service and with its
text to speech synthesis, and comes back on every delta, audio chunk and done:
what arrives for a turn that is over is dropped by id, never by timing.

The user's audio is never paused: its frames go to the STT stream the whole time.

A reply may start before the end of the user's turn is certain: at the first short
pause (``pause_ms``) the utterance is finalised and the reply is generated and
synthesized, but held. If the silence lasts to the end of the turn, the held audio
plays at once; if the user goes on speaking, the reply is withdrawn (from the
model's context too) and the next transcript is joined to this one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import IO, Protocol

from conversation.backchannel import Backchannels, words
from conversation.endpointing import FRAME_MS, Edge, Endpointer
from conversation.judge import Verdict, judge
from conversation.links import Final, LlmLink, SttLink, TtsLink
from conversation.settings import MAX_BUFFERED_AUDIO_S, ConversationSettings, pause_ms, silence_ms
from voice.stt.v1 import stt_pb2
from voice.tts.v1 import tts_pb2

log = logging.getLogger(__name__)

# Longest wait for a final after the user stopped speaking, while the STT service is up.
_FINAL_WAIT_MS = 8000
# An end-of-turn decision counts only while the user is still quiet (not speaking again).
_QUIET_FOR_DECISION_MS = 90
# The STT service's and our voice detectors place the end of speech this far apart, at most.
_SAME_PAUSE_MS = 180
# A final with words comes this soon after its end of utterance (the decode started in the silence).
_FINAL_AFTER_EOU_MS = 1000
# The end-of-turn model's decisions on a pause.
_JUDGEMENTS = (stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN, stt_pb2.SPEECH_EVENT_TYPE_TURN_INCOMPLETE)


class State(Enum):
    LISTENING = "listening"
    HEARING = "hearing you"
    THINKING = "thinking"
    SPEAKING = "speaking"


class Output(Protocol):
    """Where the reply's audio goes: a front end's speaker, or a WAV recording."""

    sample_rate_hz: int

    def write(self, pcm: bytes) -> None: ...
    def flush_pending(self) -> None: ...
    def clear(self) -> None: ...
    @property
    def played_samples(self) -> int: ...
    @property
    def buffered_samples(self) -> int: ...


class Events:
    """What a front end that speaks a protocol is told, beyond ``show``; each does nothing here."""

    def speech_started(self, at_ms: float) -> None: ...
    def speech_stopped(self, at_ms: float) -> None: ...
    def reply_started(self, turn: Turn) -> None:
        """The user's turn is over and the reply to it begins (a held reply: when released)."""

    def reply_text(self, turn: Turn, text: str) -> None: ...
    def reply_done(self, turn: Turn) -> None:
        """Played, cut short (``interrupted``) or failed (``error``)."""


def _rounded(t_ms: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in t_ms.items()}


@dataclass
class _Piece:
    text: str
    start: int  # sample of the reply's audio where it begins
    samples: int = 0


@dataclass
class _Utterance:
    start: float  # ms: where speech began, or resumed after a pause
    end: float
    turn_start: float  # ms: where the user's turn began
    ended: bool = False  # the silence lasted to the end of the turn
    ended_at: float = 0.0  # ms: when the turn was judged over
    sent_at: float = 0.0  # ms: when its end of utterance went to the STT service
    continued: bool = False  # the user went on after its pause
    over_reply: bool = False  # it began while the agent was thinking or speaking


@dataclass
class Turn:
    user_text: str
    t_ms: dict[str, float]
    id: int = 0
    agent_text: str = ""  # what the model wrote
    error: str = ""  # why the reply failed, if it did
    interrupted: bool = False
    heard_text: str = ""  # set when interrupted: what was played before the cut
    withdrawn: list[dict[str, object]] = field(default_factory=list)  # held replies this one replaced
    backchannels: list[str] = field(default_factory=list)  # what the user said over it that was no turn
    judged: list[dict[str, object]] = field(default_factory=list)  # the user's pauses, as judged (bounded)
    tentative: bool = False  # the user may not be done: audio is held, not played
    retracted: bool = False  # the user went on: the turn never happened
    paused: bool = False  # sound from the user: playback stopped until it proves to be words or not
    paused_at: float = 0.0  # ms
    audio: bytearray = field(default_factory=bytearray)  # the reply's audio so far
    pieces: list[_Piece] = field(default_factory=list)
    played: int = 0  # samples of ``audio`` played, as of the last stop (pause, barge-in)
    offset: int = 0  # the speaker sample where the reply's sample 0 is (or would have been)
    synthesized: asyncio.Event = field(default_factory=asyncio.Event)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def audible(self) -> bool:
        return not (self.tentative or self.paused or self.interrupted)

    @property
    def samples(self) -> int:
        return len(self.audio) // 2

    def heard(self, played: int) -> str:
        """The reply up to sample ``played``; a piece cut midway, in proportion."""
        words: list[str] = []
        for piece in self.pieces:
            if played >= piece.start + piece.samples:
                words += piece.text.split()
            elif played > piece.start and piece.samples:
                cut = piece.text.split()
                words += cut[: round(len(cut) * (played - piece.start) / piece.samples)]
                break
            else:
                break
        return " ".join(words)

    def report(self) -> dict[str, object]:
        line: dict[str, object] = {
            "user_text": self.user_text,
            "agent_text": self.heard_text if self.interrupted else self.agent_text.strip(),
            "interrupted": self.interrupted,
            "t_ms": _rounded(self.t_ms),
        }
        if self.error:
            line["error"] = self.error
        if self.withdrawn:
            line["withdrawn"] = self.withdrawn
        if self.backchannels:
            line["backchannels"] = self.backchannels
        if self.judged:
            line["judged"] = self.judged
        return line


class Conversation:
    def __init__(
        self,
        settings: ConversationSettings,
        speaker: Output,
        show: Callable[[str, str], None],
        report: IO[str] | None = None,
        events: Events | None = None,
    ) -> None:
        self.settings = settings
        self._events = events or Events()
        self.speaker = speaker
        self._show = show  # (kind, text): kind is "you", "ai", "state", "latency" or "note"
        self._report = report
        self.state = State.LISTENING
        self.turns: list[dict[str, object]] = []  # report lines
        self.finished: list[Turn] = []
        smart = settings.turn_detector == "smart"
        self._bounded = settings.turn_detector == "bounded"
        self._silence_ms = settings.end_silence_ms
        self._endpointer = Endpointer(
            settings.vad_aggressiveness,
            settings.min_speech_ms,
            self._silence_ms,
            pause_ms(settings.turn_detector) if settings.pause_ms is None else settings.pause_ms,
        )
        self.stt = SttLink(
            settings.stt,
            settings.security,
            self._on_final,
            self._note,
            MAX_BUFFERED_AUDIO_S,
            on_event=self._on_speech_event if smart or self._bounded else None,
            on_interim=self._on_interim if settings.backchannels or self._bounded else None,
        )
        self._smart = smart  # until the STT service says it has no end-of-turn model
        self._backchannels = Backchannels(settings.backchannels)
        self._passed = -1.0  # the turn start of the speech last let pass as a backchannel at its pause
        # With "bounded": the words decoded at the current pause, the model's probability for it,
        # and the turn start of the speech whose held reply was prepared from such words.
        self._heard_so_far: Final | None = None
        self._probability: float | None = None
        self._prepared_for = -1.0
        self._judged: list[dict[str, object]] = []  # this turn's pauses so far, as judged
        self._stt_heard_at = -1.0  # ms: when the STT service last judged a pause (it heard speech)
        self.llm = LlmLink(
            settings.llm, settings.security, settings.system_prompt, settings.max_tokens, self._note
        )
        self.tts = TtsLink(
            settings.tts, settings.security, settings.voice, speaker.sample_rate_hz, self._on_tts, self._note
        )
        self._utterances: list[_Utterance] = []  # awaiting their finals
        self._last: _Utterance | None = None  # the latest utterance
        self._carry = ""  # transcript of a pause the user spoke on after
        self._turn: Turn | None = None
        self._withdrawn: list[dict[str, object]] = []  # held replies withdrawn since the last turn
        self._turn_task: asyncio.Task[None] | None = None
        self._turn_ids = itertools.count(1)
        self._written = 0  # speaker samples written (in the speaker's played coordinates)
        self._frames = 0
        self._turn_over_frame = 0  # the frame at which the user's turn was last judged over
        self._skipped_pause = False  # the last pause came while a reply was playing: not acted on
        self._speech_start = 0.0
        self._turn_start = 0.0
        self._over_reply = False  # the speech began while the agent was thinking or speaking
        self._last_frame_at = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        # An echo canceller asks for longer speech while it converges.
        self.barge_in_ms: Callable[[int], int] = lambda ms: ms

    # -- clock -----------------------------------------------------------------------------
    def now_ms(self) -> float:
        """ms since the first microphone sample: the audio clock, plus the time since its last frame."""
        since = min((time.monotonic() - self._last_frame_at) * 1000, FRAME_MS)
        return max(0.0, (self._frames - 1) * FRAME_MS + since) if self._frames else 0.0

    @property
    def current(self) -> Turn | None:
        """The agent's turn in progress."""
        return self._turn

    @property
    def agent_busy(self) -> bool:
        """An utterance awaits its transcript, or a reply is being thought of or spoken."""
        return self._turn is not None or bool(self._utterances)

    @property
    def busy(self) -> bool:
        return self.agent_busy or self._endpointer.speaking

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self._show("state", state.value)

    def _note(self, text: str) -> None:
        self._show("note", text)

    # -- the user's side -------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(link.run()) for link in (self.stt, self.llm, self.tts)]
        for task in self._tasks:
            task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a link stopped", exc_info=exc)
            self._note(f"a link to the services stopped ({exc!r}); restart voice-agent")

    async def listen(self, frames: AsyncIterator[bytes]) -> None:
        async for frame in frames:
            self.feed(frame)

    def feed(self, frame: bytes) -> None:
        self._frames += 1
        self._last_frame_at = time.monotonic()
        if self._smart and self.stt.turn_detection is False:
            self._smart = False
            self._note("the STT service has no end-of-turn model: your turn ends after a silence")
            self._endpointer.set_silence_ms(self.settings.silence_ms or silence_ms("silence"))
        muted = self.settings.duplex == "half" and self.state == State.SPEAKING
        self.stt.send_audio(bytes(len(frame)) if muted else frame)
        boundary = self._endpointer.push(bytes(len(frame)) if muted else frame)
        if boundary is not None:
            self._on_boundary(boundary.edge, boundary.frame * FRAME_MS)
        turn = self._turn
        if turn is not None and self.settings.duplex == "full" and not (turn.tentative or turn.interrupted):
            listened_ms = (self._frames - self._turn_over_frame) * FRAME_MS
            barge_in_ms = self.barge_in_ms(self.settings.barge_in_ms)
            if not turn.paused and self._endpointer.barges_in(barge_in_ms, listened_ms):
                self._pause(turn)
            elif turn.paused and self._no_words_came(turn):
                self._resume(turn)  # a cough, a door, a chair
        # An end of utterance the connected service left unanswered held no speech.
        while (
            self._utterances
            and self.stt.connected
            and self.now_ms() - self._utterances[0].end > _FINAL_WAIT_MS
        ):
            self._utterances.pop(0)
        if not self._utterances and not self._endpointer.speaking:
            # Nothing awaits a final: older audio can go, and the stream can be replaced before
            # it reaches the service's longest.
            self.stt.trim_idle(self.settings.pre_roll_ms + 1000)
            if self.stt.roll_over_due:
                self.stt.roll_over()

    def _on_boundary(self, edge: Edge, at_ms: float) -> None:
        if edge is Edge.START:
            self._speech_start = self._turn_start = at_ms
            self._over_reply = self._turn is not None and not self._turn.tentative
            self._new_pause()
            if self._turn is None:
                self._set_state(State.HEARING)
            self._events.speech_started(at_ms)
            return
        if edge is Edge.PAUSE and self._turn is not None and not self._turn.tentative:
            # Speech over a reply: no reply is held for it, and it is transcribed whole at its
            # end (its first words may be half cut with the echo; Whisper needs what follows).
            self._skipped_pause = True
            return
        if edge is Edge.RESUME:
            if self._skipped_pause:
                self._skipped_pause = False
                return
            self._speech_start = at_ms
            self._new_pause()
            if self._last is not None and not self._bounded:
                self._last.continued = True
            if self._turn is not None and self._turn.tentative:
                # Bounded: the STT utterance goes on, and its final will hold the whole turn.
                self._retract(self._turn, carry=not self._bounded)
            return
        if edge is Edge.PAUSE and self._bounded:
            return  # judged when the words decoded at the pause come (``_on_interim``)
        if edge is Edge.PAUSE or self._last is None or self._last.ended or self._last.continued:
            # The utterance is finalised now; a reply may start, held until the end is sure.
            self._last = _Utterance(
                self._speech_start,
                at_ms + FRAME_MS,
                self._turn_start,
                sent_at=self.now_ms(),
                over_reply=self._over_reply,
            )
            self._utterances.append(self._last)
            self.stt.end_utterance()
            if edge is Edge.PAUSE:
                return
        self._skipped_pause = False
        self._last.ended = True  # END: the silence lasted, or the end-of-turn model said so
        self._last.ended_at = self.now_ms()
        self._turn_over_frame = self._frames  # the user's voice before this is no barge-in
        self._events.speech_stopped(self._last.end)
        if self._turn is not None and self._turn.tentative:
            self._release(self._turn)
        elif self._turn is None:
            self._set_state(State.LISTENING)

    def _no_words_came(self, turn: Turn) -> bool:
        """The sound that paused the reply has proved to be no words."""
        if self._endpointer.quiet_ms() < self.settings.resume_ms:
            return False
        if any(self.now_ms() - u.sent_at < _FINAL_AFTER_EOU_MS for u in self._utterances):
            return False  # its final may still come
        # The STT service took it for speech: wait for the end of that turn and its final.
        return not (self._stt_heard_at >= turn.paused_at and self._endpointer.speaking)

    def _on_speech_event(self, event: stt_pb2.SpeechEvent) -> None:
        """The end-of-turn model judged a pause: a complete turn ends now, not at the fallback silence."""
        self._stt_heard_at = self.now_ms()
        if event.type not in _JUDGEMENTS:
            return
        # Only the pause it judged: not when the user has spoken again since.
        speech_end = self.stt.time_ms(event.offset_ms)
        if (
            self._endpointer.quiet_ms() < _QUIET_FOR_DECISION_MS
            or self._last_voiced_ms() > speech_end + _SAME_PAUSE_MS
        ):
            return
        if self._bounded:
            if not self._over_reply:  # speech over a reply is judged at its end, as ever
                self._probability = event.end_of_turn_probability
                self._judge_pause()
            return
        if event.type != stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN:
            return
        if (boundary := self._endpointer.end_now()) is not None:
            self._on_boundary(boundary.edge, boundary.frame * FRAME_MS)

    def _last_voiced_ms(self) -> float:
        return self._frames * FRAME_MS - self._endpointer.quiet_ms()

    def _on_interim(self, interim: Final) -> None:
        """The words so far, decoded at a pause: a backchannel over the reply lets it go on now;
        with the bounded detector, the user's pause is judged on them."""
        if (
            not self._endpointer.speaking
            or self._endpointer.quiet_ms() < _QUIET_FOR_DECISION_MS
            or interim.end_ms < self._last_voiced_ms() - _SAME_PAUSE_MS  # words before the last ones
        ):
            return
        turn, text = self._turn, interim.text.strip()
        if self._over_reply:
            if turn is not None and turn.paused and not turn.interrupted and text in self._backchannels:
                self._passed = self._turn_start
                self._let_pass(text)
        elif self._bounded and text:
            self._heard_so_far = interim
            self._judge_pause()

    def _new_pause(self) -> None:
        """Speech (again): what was judged of the last pause no longer holds."""
        self._heard_so_far, self._probability = None, None
        self._endpointer.set_silence_ms(self._silence_ms)

    def _judge_pause(self) -> None:
        """Bounded: the pause judged on its words, and on the model's probability once it came.

        The reply is prepared (held) on the words; done ends the turn now, plainly unfinished
        words wait up to the longest silence, and anything else the normal silence.
        """
        heard = self._heard_so_far
        if heard is None or not self._endpointer.speaking:
            return
        verdict = judge(heard.text, self._probability)
        record: dict[str, object] = {
            "words": heard.text.strip(),
            "probability": None if self._probability is None else round(self._probability, 3),
            "verdict": verdict.value,
            "at_ms": round(self.now_ms(), 1),
        }
        if self._judged and self._judged[-1]["words"] == record["words"]:
            self._judged[-1] = record  # the same pause, judged again with the model's probability
        else:
            self._judged.append(record)
        if verdict is Verdict.UNFINISHED:
            self._endpointer.set_silence_ms(self.settings.max_silence_ms)
            return
        self._endpointer.set_silence_ms(self._silence_ms)
        if self._prepared_for != self._turn_start:
            self._prepared_for = self._turn_start
            text = heard.text.strip()
            self._show("you", text)
            t_ms = {
                "speech_start": self._turn_start,
                "speech_end": self._last_voiced_ms() + FRAME_MS,
                "transcript_final": self.now_ms(),
            }
            self.ask(text, t_ms, tentative=True)
        if verdict is Verdict.DONE and (boundary := self._endpointer.end_now()) is not None:
            self._on_boundary(boundary.edge, boundary.frame * FRAME_MS)

    def _on_final(self, final: Final) -> None:
        # The utterance this final belongs to: the last one that began before its words ended.
        utterance = _Utterance(self._speech_start, final.end_ms, self._turn_start, True, self.now_ms())
        while self._utterances and self._utterances[0].start <= final.end_ms:
            utterance = self._utterances.pop(0)
        text = final.text.strip()
        if utterance.turn_start == self._prepared_for:
            self._prepared_for = -1.0
            turn = self._turn
            if turn is None or words(text) == words(turn.user_text) or "first_audio" in turn.t_ms:
                return  # the reply prepared from the words at the pause answers it
            self._retract(turn, carry=False)  # the final heard more: answer that instead
        if utterance.continued:
            self._carry = f"{self._carry} {text}".strip()
            return
        text, self._carry = f"{self._carry} {text}".strip(), ""
        if not text:
            return
        if utterance.over_reply and text in self._backchannels:
            if utterance.turn_start != self._passed:  # not already let pass at its pause
                self._let_pass(text)
            return
        self._show("you", text)
        t_ms = {
            "speech_start": utterance.turn_start,
            "speech_end": utterance.end,
            "transcript_final": self.now_ms(),
        }
        if utterance.ended:
            t_ms["end_of_turn"] = utterance.ended_at
        self.ask(text, t_ms, tentative=not utterance.ended)

    def ask(self, text: str, t_ms: dict[str, float], tentative: bool = False) -> None:
        """Start the agent's turn on what the user said (or typed); a tentative one is held."""
        if self._turn is not None and self._turn.tentative:
            self._retract(self._turn)  # a held reply to what is now only the start of this
            text, self._carry = f"{self._carry} {text}".strip(), ""
        elif self._turn is not None and not self._turn.interrupted:
            self._barge_in()  # the user said more before the reply was done: answer that instead
        turn = Turn(text, t_ms, id=next(self._turn_ids), tentative=tentative)
        turn.withdrawn, self._withdrawn = self._withdrawn, []
        turn.judged = list(self._judged)  # a held turn takes them again when released
        if not tentative:
            self._judged = []
        previous = self._turn_task
        if tentative:
            turn.t_ms["held"] = self.now_ms()
        self._turn = turn
        if not tentative:
            turn.confirmed.set()
            self._events.reply_started(turn)
        self._turn_task = asyncio.create_task(self._run_turn(turn, previous))

    # -- the reply side --------------------------------------------------------------------
    async def _run_turn(self, turn: Turn, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # it ends first (its failure was its own, and reported)
        self._set_state(State.THINKING)
        try:
            async for event in self.llm.turn(turn.user_text, turn.id):
                if event.HasField("delta") and not turn.interrupted:
                    turn.t_ms.setdefault("first_token", self.now_ms())
                    turn.agent_text += event.delta.text
                    self._events.reply_text(turn, event.delta.text)
                    self.tts.text(event.delta.text, turn.id)
                elif event.HasField("turn_end") and event.turn_end.error.message:
                    turn.error = f"the chat service failed: {event.turn_end.error.message}"
            if not turn.interrupted:
                self.tts.flush(turn.id)
                await turn.synthesized.wait()
                await turn.confirmed.wait()
                self.speaker.flush_pending()
                while not turn.interrupted and (turn.paused or self.speaker.played_samples < self._written):
                    await asyncio.sleep(FRAME_MS / 1000 / 3)
            if turn.retracted:
                self.llm.retract(turn.id)
            elif turn.interrupted:
                # Cut while generating or while playing: the model's context keeps what was heard.
                self.llm.truncate(turn.heard_text, turn.id)
        except Exception as exc:  # reported as this turn's failure; the conversation goes on
            log.exception("turn %d failed", turn.id)
            turn.error = f"the reply failed: {exc!r}"
        finally:
            self._finish(turn)

    def _finish(self, turn: Turn) -> None:
        if self._turn is turn:
            self._turn = None
            self._set_state(State.HEARING if self._endpointer.speaking else State.LISTENING)
        if turn.retracted:
            return
        line = turn.report()
        said = str(line["agent_text"])
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
        self.turns.append(line)
        self.finished.append(turn)
        self._events.reply_done(turn)
        if self._report is not None:
            self._report.write(json.dumps(line) + "\n")
            self._report.flush()

    def _on_tts(self, response: tts_pb2.StreamingSynthesizeResponse) -> None:
        turn = self._turn
        if response.HasField("done"):
            done = response.done
            if turn is not None and done.turn_id == turn.id and not done.cancelled:
                turn.synthesized.set()
        elif turn is not None and response.audio.turn_id == turn.id and not turn.interrupted:
            self._add_audio(turn, response.audio)
        # Anything else belongs to a turn that is over: dropped.

    def _add_audio(self, turn: Turn, chunk: tts_pb2.SynthesizedAudio) -> None:
        samples = len(chunk.audio_content) // 2
        if chunk.text or not turn.pieces:
            turn.pieces.append(_Piece(chunk.text, turn.samples))
        turn.pieces[-1].samples += samples
        turn.audio += chunk.audio_content
        if turn.audible:
            self._write(turn, chunk.audio_content)

    def _write(self, turn: Turn, pcm: bytes) -> None:
        if "first_audio" not in turn.t_ms:
            turn.offset = self._written - turn.played  # where the reply's sample 0 is on the speaker
            # The audio starts playing after whatever is still queued ahead of it.
            ahead_ms = self.speaker.buffered_samples * 1000 / self.speaker.sample_rate_hz
            turn.t_ms["first_audio"] = self.now_ms() + ahead_ms
        if pcm:
            self._set_state(State.SPEAKING)
        self.speaker.write(pcm)
        self._written += len(pcm) // 2

    def _play_rest(self, turn: Turn) -> None:
        """Play the reply from where it stopped (or from its start), and the rest as it comes."""
        turn.offset = self._written - turn.played
        rest = bytes(turn.audio[turn.played * 2 :])
        if rest:
            self._write(turn, rest)
            if turn.synthesized.is_set():
                self.speaker.flush_pending()  # all of the reply is written: let its last samples out
        else:
            self._set_state(State.THINKING)

    def _stop_playing(self, turn: Turn) -> None:
        """Silence the speaker now; remember how much of the reply was played."""
        self.speaker.clear()
        played = self.speaker.played_samples
        if turn.audible:
            turn.played = max(0, min(turn.samples, played - turn.offset))
        self._written = played

    def _release(self, turn: Turn) -> None:
        """The user's turn did end: play what was held, and the rest as it comes."""
        turn.tentative = False
        turn.judged, self._judged = self._judged, []
        turn.t_ms["end_of_turn"] = turn.t_ms["released"] = self.now_ms()
        self._events.reply_started(turn)
        if turn.audible:
            self._play_rest(turn)
        turn.confirmed.set()

    def _retract(self, turn: Turn, carry: bool = True) -> None:
        """The user went on speaking: drop the held reply; the next transcript joins this one
        (``carry``), or holds the whole turn anyway (the STT utterance was not ended)."""
        turn.t_ms["withdrawn"] = self.now_ms()
        record: dict[str, object] = {
            "user_text": turn.user_text,
            "agent_text": turn.agent_text.strip(),
            "t_ms": _rounded(turn.t_ms),
        }
        self._withdrawn += [*turn.withdrawn, record]
        turn.retracted = turn.interrupted = True
        if carry:
            self._carry = f"{turn.user_text} {self._carry}".strip()
        else:
            self._prepared_for = -1.0
        self.llm.cancel(turn.id)
        self.tts.cancel(turn.id)
        turn.synthesized.set()
        turn.confirmed.set()
        self._turn = None
        self._set_state(State.HEARING)

    def _pause(self, turn: Turn) -> None:
        """Sound from the user over the reply: stop playing until it proves to be words, or not."""
        self._stop_playing(turn)
        turn.paused, turn.paused_at = True, self.now_ms()
        turn.t_ms["paused"] = turn.paused_at
        turn.t_ms.setdefault("barge_in", turn.paused_at)
        self._set_state(State.HEARING)

    def _resume(self, turn: Turn) -> None:
        """It was not words: the reply goes on from where it stopped."""
        turn.paused = False
        turn.t_ms.pop("barge_in", None)
        turn.t_ms["resumed"] = self.now_ms()
        self._play_rest(turn)

    def _let_pass(self, text: str) -> None:
        """Only a backchannel over the reply: it goes on (from where it paused), and it is no turn."""
        self._show("you", f"{text} (the reply goes on)")
        turn = self._turn
        if turn is None or turn.tentative or turn.interrupted:
            return  # the reply it was said over is done
        turn.backchannels.append(text)
        turn.t_ms["backchannel"] = self.now_ms()
        self._turn_over_frame = self._frames  # its voice is no barge-in
        if turn.paused:
            self._resume(turn)

    def end_turn(self) -> bool:
        """The user says their turn is over (a button, a commit): end the speech heard so far now.
        False when no speech is being heard."""
        if (boundary := self._endpointer.end_now()) is None:
            return False
        self._on_boundary(boundary.edge, boundary.frame * FRAME_MS)
        return True

    def cancel(self) -> bool:
        """Stop the reply now, as an interruption would: the model keeps what was heard.
        False when no reply is under way."""
        turn = self._turn
        if turn is None or turn.tentative or turn.interrupted:
            return False
        self._barge_in()
        return True

    def _barge_in(self) -> None:
        """The user said something: the reply ends where it was stopped, and what was heard stays."""
        turn = self._turn
        assert turn is not None
        if not turn.paused:
            self._pause(turn)
        turn.interrupted = True
        turn.heard_text = turn.heard(turn.played)
        self.llm.cancel(turn.id)
        self.tts.cancel(turn.id)
        turn.synthesized.set()

    # -- the end ---------------------------------------------------------------------------
    async def close(self) -> None:
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
        self.stt.close()
        self.llm.close()
        self.tts.close()
        _, pending = await asyncio.wait(self._tasks, timeout=5)
        for task in pending:
            task.cancel()
