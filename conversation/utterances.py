"""The user's utterances that await their finals from the STT service.

An utterance ends at a pause (its end of utterance goes to the STT service, and a held reply
may be prepared from its final) or at the end of the turn. Each final is matched to the
utterance it belongs to; one the service leaves unanswered held no speech.
"""

from __future__ import annotations

from dataclasses import dataclass

# Longest wait for a final after the user stopped speaking, while the STT service is up.
FINAL_WAIT_MS = 8000
# A final with words comes this soon after its end of utterance (the decode started in the silence).
FINAL_AFTER_EOU_MS = 1000


@dataclass
class Utterance:
    start: float  # ms: where speech began, or resumed after a pause
    end: float
    turn_start: float  # ms: where the user's turn began
    ended: bool = False  # the silence lasted to the end of the turn
    ended_at: float = 0.0  # ms: when the turn was judged over
    sent_at: float = 0.0  # ms: when its end of utterance went to the STT service
    continued: bool = False  # the user went on after its pause
    over_reply: bool = False  # it began while the agent was thinking or speaking
    dropped: bool = False  # the client withdrew it: its words never become a turn


class Utterances:
    def __init__(self) -> None:
        self._waiting: list[Utterance] = []  # in order
        self.last: Utterance | None = None  # the latest

    def __bool__(self) -> bool:
        """Some utterance awaits its final."""
        return bool(self._waiting)

    def add(self, utterance: Utterance) -> Utterance:
        self._waiting.append(utterance)
        self.last = utterance
        return utterance

    def of(self, end_ms: float, otherwise: Utterance) -> Utterance:
        """The utterance a final whose words end at ``end_ms`` belongs to: the last one that began
        before its words ended (those before it had no words); ``otherwise`` where none waits."""
        utterance = otherwise
        while self._waiting and self._waiting[0].start <= end_ms:
            utterance = self._waiting.pop(0)
        return utterance

    def drop(self) -> None:
        """Those waiting never become a turn: their finals are taken and let go."""
        for utterance in self._waiting:
            utterance.dropped = True

    def expire(self, now_ms: float) -> None:
        """Ends of utterance the (connected) service left unanswered held no speech."""
        while self._waiting and now_ms - self._waiting[0].end > FINAL_WAIT_MS:
            self._waiting.pop(0)

    def final_may_come(self, now_ms: float) -> bool:
        """An end of utterance went out so recently that its final may still come."""
        return any(now_ms - u.sent_at < FINAL_AFTER_EOU_MS for u in self._waiting)
