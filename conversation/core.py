"""The conversation: a small state machine over the user's audio, the three links and the reply's output.

    LISTENING --speech--> HEARING --end of speech--> (final transcript) THINKING
    THINKING --first audio--> SPEAKING --reply played--> LISTENING
    THINKING/SPEAKING --voiced sound past the barge-in time--> paused
    paused --words transcribed--> HEARING (turn cut short, the model keeps what was heard)
    paused --quiet, no words (a cough, a door)--> the reply goes on where it stopped
    paused --only a backchannel ("mm-hmm", "yeah")--> the reply goes on; it is no turn

It wires the parts: the endpointer and the STT link hear the user (whose audio is never paused), a
turn detector (``detectors``) decides when the user's turn is over, and the agent (``agent``) thinks
(calling tools) and speaks one turn at a time. A reply may be prepared at a short pause (``pause_ms``)
and held: played if the silence lasts to the end of the turn, withdrawn (from the model's context
too) if the user goes on, the next transcript joined to this one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import IO

from conversation.agent import Agent, Events, State
from conversation.backchannel import Backchannels, words
from conversation.clock import AudioClock
from conversation.detectors import Decision, detector_for
from conversation.endpointing import Edge, Endpointer
from conversation.links import Links, SttLink
from conversation.messages import Final, SpeechEvent
from conversation.player import Output
from conversation.settings import MAX_BUFFERED_AUDIO_S, ConversationSettings
from conversation.tools import Tools
from conversation.tracing import traced
from conversation.turn import Turn
from conversation.utterances import Utterance, Utterances
from foundation.audio import FRAME_MS

# An end-of-turn decision counts only while the user is still quiet (not speaking again).
_QUIET_FOR_DECISION_MS = 90
# The STT service's and our voice detectors place the end of speech this far apart, at most.
_SAME_PAUSE_MS = 180


class Conversation:
    def __init__(
        self,
        settings: ConversationSettings,
        speaker: Output,
        show: Callable[[str, str], None],
        report: IO[str] | None = None,
        events: Events | None = None,
        tools: Tools | None = None,
    ) -> None:
        self.settings = settings
        self.state = State.LISTENING
        self._clock = AudioClock()
        self.now_ms = self._clock.now_ms
        self._trace, show, self._events = traced(settings, show, events or Events(), self.now_ms)
        self._show = show  # (kind, text): kind is "you", "ai", "state", "latency" or "note"
        self._note: Callable[[str], None] = lambda text: show("note", text)
        self._detector = detector = detector_for(settings, self.now_ms)
        self._endpointer = Endpointer(
            settings.vad_aggressiveness, settings.min_speech_ms, detector.silence_ms, detector.pause_ms
        )
        self.stt = SttLink(
            settings.stt,
            settings.security,
            self._on_final,
            self._note,
            MAX_BUFFERED_AUDIO_S,
            on_event=self._on_speech_event if self._detector.uses_model else None,
            on_interim=self._on_interim if settings.backchannels or self._detector.uses_words else None,
        )
        self._backchannels = Backchannels(settings.backchannels)
        self._passed = -1.0  # the turn start of the speech last let pass as a backchannel at its pause
        self._prepared_for = -1.0  # the turn start of the speech a held reply was prepared for at a pause
        self._stt_heard_at = -1.0  # ms: when the STT service last judged a pause (it heard speech)
        self.agent = Agent(settings, speaker, self.now_ms, self._set_state, show, report, self._events, tools)
        self.update = self.agent.update  # new instructions or tools, from the next reply on
        self.agent.user_speaking = lambda: self._endpointer.speaking
        self._utterances = Utterances()  # awaiting their finals
        self._carry = ""  # transcript of a pause the user spoke on after
        self._withdrawn: list[dict[str, object]] = []  # held replies withdrawn since the last turn
        self._turn_over_frame = 0  # the frame at which the user's turn was last judged over
        self._skipped_pause = False  # the last pause came while a reply was playing: not acted on
        self._speech_start = self._turn_start = 0.0
        self._over_reply = False  # the speech began while the agent was thinking or speaking
        self._links = Links(self._note, self.stt, self.agent.llm, self.agent.tts)
        # An echo canceller asks for longer speech while it converges.
        self.barge_in_ms: Callable[[int], int] = lambda ms: ms

    @property
    def current(self) -> Turn | None:
        """The agent's turn in progress."""
        return self.agent.turn

    @property
    def agent_busy(self) -> bool:
        """An utterance awaits its transcript, or a reply is being thought of or spoken."""
        return self.current is not None or bool(self._utterances)

    @property
    def busy(self) -> bool:
        return self.agent_busy or self._endpointer.speaking

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self._show("state", state.value)

    def start(self) -> None:
        self._trace.start(self._links)

    async def listen(self, frames: AsyncIterator[bytes]) -> None:
        async for frame in frames:
            self.feed(frame)

    def feed(self, frame: bytes) -> None:
        self._clock.tick()
        if (
            self._detector.uses_model  # only such a policy falls back; none asks each frame
            and self.stt.turn_detection is False
            and (plain := self._detector.without_model()) is not self._detector
        ):
            self._detector = plain  # the STT service has no end-of-turn model: the policy falls back
            self._note("the STT service has no end-of-turn model: your turn ends after a silence")
            self._endpointer.set_silence_ms(plain.silence_ms)
        muted = self.settings.duplex == "half" and self.state == State.SPEAKING
        self.stt.send_audio(bytes(len(frame)) if muted else frame)
        boundary = self._endpointer.push(bytes(len(frame)) if muted else frame)
        if boundary is not None:
            self._on_boundary(boundary.edge, boundary.frame * FRAME_MS)
        turn = self.current
        if turn is not None and self.settings.duplex == "full" and not (turn.tentative or turn.interrupted):
            listened_ms = (self._clock.frames - self._turn_over_frame) * FRAME_MS
            barge_in_ms = self.barge_in_ms(self.settings.barge_in_ms)
            if not turn.paused and self._endpointer.barges_in(barge_in_ms, listened_ms):
                self.agent.pause(turn)
            elif turn.paused and self._no_words_came(turn):
                self.agent.resume(turn)  # a cough, a door, a chair
        # An end of utterance the connected service left unanswered held no speech.
        if self.stt.connected:
            self._utterances.expire(self.now_ms())
        if not self._utterances and not self._endpointer.speaking:
            # Nothing awaits a final: older audio can go, and the stream can be replaced before
            # it reaches the service's longest.
            self.stt.trim_idle(self.settings.pre_roll_ms + 1000)
            if self.stt.roll_over_due:
                self.stt.roll_over()

    def _on_boundary(self, edge: Edge, at_ms: float) -> None:
        if edge is Edge.START:
            self._speech_start = self._turn_start = at_ms
            self._over_reply = self.current is not None and not self.current.tentative
            self._new_pause()
            if self.current is None:
                self._set_state(State.HEARING)
            self._events.speech_started(at_ms)
            return
        if edge is Edge.PAUSE and self.current is not None and not self.current.tentative:
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
            whole_turn = self._detector.whole_turn
            if self._utterances.last is not None and not whole_turn:
                self._utterances.last.continued = True
            if self.current is not None and self.current.tentative:
                # A whole turn: the STT utterance goes on, and its final will hold all of it.
                self._retract(self.current, carry=not whole_turn)
            return
        if edge is Edge.PAUSE and self._detector.whole_turn:
            return  # judged when the words decoded at the pause come (``_on_interim``)
        last = self._utterances.last
        if edge is Edge.PAUSE or last is None or last.ended or last.continued:
            # The utterance is finalised now; a reply may start, held until the end is sure.
            last = self._end_utterance(at_ms + FRAME_MS)
            if edge is Edge.PAUSE:
                return
        self._skipped_pause = False
        last.ended = True  # END: the silence lasted, or the end-of-turn model said so
        last.ended_at = self.now_ms()
        self._turn_over_frame = self._clock.frames  # the user's voice before this is no barge-in
        self._events.speech_stopped(last.end)
        if self.current is not None and self.current.tentative:
            self.agent.release(self.current, self._detector.take_judged())
        elif self.current is None:
            self._set_state(State.LISTENING)

    def _end_utterance(self, end_ms: float) -> Utterance:
        """The STT service finalises the speech so far: its final will come for this utterance."""
        self.stt.end_utterance()
        utterance = Utterance(self._speech_start, end_ms, self._turn_start, over_reply=self._over_reply)
        utterance.sent_at = self.now_ms()
        return self._utterances.add(utterance)

    def _no_words_came(self, turn: Turn) -> bool:
        """The sound that paused the reply has proved to be no words."""
        quiet = self._endpointer.quiet_ms() >= self.settings.resume_ms
        if not quiet or self._utterances.final_may_come(self.now_ms()):
            return False
        # The STT service took it for speech: wait for the end of that turn and its final.
        return not (self._stt_heard_at >= turn.paused_at and self._endpointer.speaking)

    def _on_speech_event(self, event: SpeechEvent) -> None:
        """The STT service heard speech; where its model judged a pause, the detector decides."""
        self._stt_heard_at = self.now_ms()
        # Only the pause it judged: not when the user has spoken again since.
        if (
            event.judgement is None
            or not self._endpointer.speaking
            or self._endpointer.quiet_ms() < _QUIET_FOR_DECISION_MS
            or self._last_voiced_ms() > event.at_ms + _SAME_PAUSE_MS
        ):
            return
        self._decide(self._detector.judge_event(event, self._over_reply))

    def _last_voiced_ms(self) -> float:
        return self._clock.frames * FRAME_MS - self._endpointer.quiet_ms()

    def _on_interim(self, interim: Final) -> None:
        """The words so far, decoded at a pause: a backchannel over the reply lets it go on now;
        otherwise the detector may judge the pause on them."""
        if (
            not self._endpointer.speaking
            or self._endpointer.quiet_ms() < _QUIET_FOR_DECISION_MS
            or interim.end_ms < self._last_voiced_ms() - _SAME_PAUSE_MS  # words before the last ones
        ):
            return
        turn, text = self.current, interim.text.strip()
        if self._over_reply:
            if turn is not None and turn.paused and not turn.interrupted and text in self._backchannels:
                self._passed = self._turn_start
                self._let_pass(text)
        else:
            self._decide(self._detector.judge_words(interim))

    def _new_pause(self) -> None:
        """Speech (again): what was judged of the last pause no longer holds."""
        self._endpointer.set_silence_ms(self._detector.speech_again())

    def _decide(self, decision: Decision | None) -> None:
        """Act on the detector's decision: the silence that ends the turn, a held reply prepared on
        the words at the pause, the turn ended now."""
        if decision is None:
            return
        self._endpointer.set_silence_ms(decision.silence_ms)
        if decision.prepare is not None and self._prepared_for != self._turn_start:
            self._prepared_for = self._turn_start
            text = decision.prepare.text.strip()
            self.ask(text, self._said(text, self._turn_start, self._last_voiced_ms() + FRAME_MS), True)
        if decision.end_now and (boundary := self._endpointer.end_now()) is not None:
            self._on_boundary(boundary.edge, boundary.frame * FRAME_MS)

    def _on_final(self, final: Final) -> None:
        # The utterance this final belongs to: the last one that began before its words ended.
        otherwise = Utterance(self._speech_start, final.end_ms, self._turn_start, True, self.now_ms())
        utterance = self._utterances.of(final.end_ms, otherwise)
        text = final.text.strip()
        if utterance.dropped:
            return
        if utterance.turn_start == self._prepared_for:
            self._prepared_for = -1.0
            turn = self.current
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
        t_ms = self._said(text, utterance.turn_start, utterance.end)
        if utterance.ended:
            t_ms["end_of_turn"] = utterance.ended_at
        self.ask(text, t_ms, tentative=not utterance.ended)

    def _said(self, text: str, start_ms: float, end_ms: float) -> dict[str, float]:
        """The user said ``text`` (shown): the times of the turn it is."""
        self._show("you", text)
        return {"speech_start": start_ms, "speech_end": end_ms, "transcript_final": self.now_ms()}

    def ask(self, text: str, t_ms: dict[str, float], tentative: bool = False) -> None:
        """Start the agent's turn on what the user said (or typed); a tentative one is held."""
        if self.current is not None and self.current.tentative:
            self._retract(self.current)  # a held reply to what is now only the start of this
            text, self._carry = f"{self._carry} {text}".strip(), ""
        elif self.current is not None and not self.current.interrupted:
            self.agent.barge_in()  # the user said more before the reply was done: answer that instead
        # A held turn takes the judged pauses again when released.
        judged = list(self._detector.judged) if tentative else self._detector.take_judged()
        withdrawn, self._withdrawn = self._withdrawn, []
        self.agent.start(text, t_ms, tentative, withdrawn, judged)

    def _retract(self, turn: Turn, carry: bool = True) -> None:
        """The user went on speaking: drop the held reply; the next transcript joins this one
        (``carry``), or holds the whole turn anyway (the STT utterance was not ended)."""
        self._withdrawn += self.agent.withdraw(turn)
        if carry:
            self._carry = f"{turn.user_text} {self._carry}".strip()
        else:
            self._prepared_for = -1.0

    def _let_pass(self, text: str) -> None:
        """Only a backchannel over the reply: it goes on (from where it paused), and it is no turn."""
        self._show("you", f"{text} (the reply goes on)")
        if self.agent.let_pass(text):
            self._turn_over_frame = self._clock.frames  # its voice is no barge-in

    def end_turn(self) -> bool:
        """The user says their turn is over (a button, a commit): end the speech heard so far now.
        False when no speech is being heard."""
        if (boundary := self._endpointer.end_now()) is None:
            return False
        self._on_boundary(boundary.edge, boundary.frame * FRAME_MS)
        return True

    def drop_speech(self) -> None:
        """The user's words since their last turn are withdrawn (a client cleared its input): the
        speech heard so far ends here, and nothing of it becomes a turn; a reply held for it goes."""
        if self._endpointer.end_now() is not None:
            self._end_utterance(self.now_ms()).ended = True  # finalised apart from what follows
        self._utterances.drop()
        if (turn := self.current) is not None and turn.tentative:
            self.agent.withdraw(turn)
        self._carry, self._prepared_for, self._skipped_pause = "", -1.0, False
        self._detector.take_judged()

    def cancel(self) -> bool:
        """Stop the reply now, as an interruption would: the model keeps what was heard.
        False when no reply is under way."""
        turn = self.current
        if turn is None or turn.tentative or turn.interrupted:
            return False
        self.agent.barge_in()
        return True

    async def close(self) -> None:
        self.agent.cancel_task()
        await self._trace.close(self._links)
