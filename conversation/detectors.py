"""Turn detectors: when is the user's turn over? One class per policy, behind one small interface.

The conversation tells its detector what it heard (the STT service's speech events, the words
decoded at a pause) and the detector answers with a ``Decision``: the silence that now ends the
turn, whether to end it at once, and the words to prepare a held reply on. A new policy is a
new class here and a name in ``DETECTORS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from conversation.judge import Verdict, judge
from conversation.messages import Final, Judgement, SpeechEvent
from conversation.settings import DEFAULT_SILENCE_MS, ConversationSettings, pause_ms

Clock = Callable[[], float]


@dataclass(frozen=True)
class Decision:
    silence_ms: int  # the silence that now ends the turn
    end_now: bool = False
    prepare: Final | None = None  # words to prepare a held reply on


class TurnDetector:
    """The silence alone ends the turn ("silence"); the base of every policy."""

    # Asks the STT service's end-of-turn model to judge each pause.
    uses_model = False
    # Asks for the words decoded at each pause.
    uses_words = False
    # The STT utterance goes on across the user's pauses: one final holds the whole turn.
    whole_turn = False

    def __init__(self, settings: ConversationSettings, clock: Clock) -> None:
        self.silence_ms = settings.end_silence_ms
        # The pause that prepares a held reply (0: none).
        self.pause_ms = pause_ms(settings.turn_detector) if settings.pause_ms is None else settings.pause_ms
        self._settings = settings
        self._clock = clock
        self.judged: list[dict[str, object]] = []  # this turn's pauses so far, as judged

    def speech_again(self) -> int:
        """Speech after a pause: what was judged of it no longer holds. The silence that ends the turn."""
        return self.silence_ms

    def judge_event(self, event: SpeechEvent, over_reply: bool) -> Decision | None:
        """The end-of-turn model judged the pause the user is in."""
        return None

    def judge_words(self, words: Final) -> Decision | None:
        """The words so far, decoded at the pause the user is in."""
        return None

    def take_judged(self) -> list[dict[str, object]]:
        judged, self.judged = self.judged, []
        return judged

    def without_model(self) -> TurnDetector:
        """The policy to follow where the STT service has no end-of-turn model."""
        return self


class SmartDetector(TurnDetector):
    """The end-of-turn model ends the turn at a pause it judges complete; else the long silence."""

    uses_model = True

    def judge_event(self, event: SpeechEvent, over_reply: bool) -> Decision | None:
        if event.judgement is Judgement.END_OF_TURN:
            return Decision(self.silence_ms, end_now=True)
        return None

    def without_model(self) -> TurnDetector:
        return SilenceFallback(self._settings, self._clock)


class BoundedDetector(TurnDetector):
    """Each pause judged on its words and the model's probability (``judge``): done ends the turn
    at once, unsure after the silence, plainly unfinished words after the longest silence.
    Speech over a reply is judged at its end, as ever."""

    uses_model = True
    uses_words = True
    whole_turn = True

    def __init__(self, settings: ConversationSettings, clock: Clock) -> None:
        super().__init__(settings, clock)
        self._max_silence_ms = settings.max_silence_ms
        self._words: Final | None = None  # decoded at the current pause
        self._probability: float | None = None  # the model's, for the current pause

    def speech_again(self) -> int:
        self._words, self._probability = None, None
        return self.silence_ms

    def judge_event(self, event: SpeechEvent, over_reply: bool) -> Decision | None:
        if over_reply or event.judgement is None:
            return None
        self._probability = event.probability
        return self._judge()

    def judge_words(self, words: Final) -> Decision | None:
        if not words.text.strip():
            return None
        self._words = words
        return self._judge()

    def _judge(self) -> Decision | None:
        words = self._words
        if words is None:
            return None  # the model's word comes first: judged when the words come
        verdict = judge(words.text, self._probability)
        record: dict[str, object] = {
            "words": words.text.strip(),
            "probability": None if self._probability is None else round(self._probability, 3),
            "verdict": verdict.value,
            "at_ms": round(self._clock(), 1),
        }
        if self.judged and self.judged[-1]["words"] == record["words"]:
            self.judged[-1] = record  # the same pause, judged again with the model's probability
        else:
            self.judged.append(record)
        if verdict is Verdict.UNFINISHED:
            return Decision(self._max_silence_ms)
        return Decision(self.silence_ms, end_now=verdict is Verdict.DONE, prepare=words)


class SilenceFallback(TurnDetector):
    """The smart policy where the STT service has no end-of-turn model: the ordinary silence."""

    def __init__(self, settings: ConversationSettings, clock: Clock) -> None:
        super().__init__(settings, clock)
        self.silence_ms = settings.silence_ms or DEFAULT_SILENCE_MS


DETECTORS: dict[str, type[TurnDetector]] = {
    "silence": TurnDetector,
    "smart": SmartDetector,
    "bounded": BoundedDetector,
}


def detector_for(settings: ConversationSettings, clock: Clock) -> TurnDetector:
    return DETECTORS[settings.turn_detector](settings, clock)
