"""The bounded detector's verdicts on a pause, from its words so far and the end-of-turn model."""

from __future__ import annotations

import pytest

from conversation.judge import Verdict, judge
from conversation.settings import ConversationSettings
from edge_client.config import from_args, parser

# Words Whisper gives at the pauses of the paused read sentences, and at the end of whole ones.
CASES = [
    # Words and probabilities as Whisper tiny.en and Smart Turn v3.2 gave them (bench/e2e's
    # sets: the pauses put inside the read sentences, and the whole sentences and card names).
    ("He was not.", 0.578, Verdict.UNFINISHED),  # the words win: nothing after the negation
    ("And Mr. John Dashwood had then leisure to consider how much there might be prudently "
     "in his power to", 0.904, Verdict.UNFINISHED),
    ("Unless to be rather cold-hearted and rather selfish is to be...", 0.024, Verdict.UNFINISHED),
    ("And Mr. John Dashwood had", 0.05, Verdict.UNFINISHED),  # the model is sure it goes on
    ("Had he married a more amiable woman?", 0.072, Verdict.UNFINISHED),
    ("might even have been", 0.014, Verdict.UNFINISHED),
    ("He might even have been made amiable himself.", 0.873, Verdict.DONE),
    ("Had he married a more amiable woman he might have been made still more respectable than "
     "he was.", 0.985, Verdict.DONE),  # a verb may end a sentence
    ("Four queen of clothes.", 0.985, Verdict.DONE),
    ("10 of close", 0.989, Verdict.DONE),  # unpunctuated, but the model is sure
    ("7 of clubs", 0.6, Verdict.UNSURE),  # unpunctuated, and the model not sure: the normal wait
    ("He was not an old supposed young man.", 0.083, Verdict.UNFINISHED),  # the model is wrong here
    ("Eight of spades, four of close, seven of hearts.", 0.3, Verdict.UNSURE),
    # No model (a service without it), and words of the kind people say.
    ("What is the weather in Paris?", None, Verdict.DONE),
    ("He was not an ill-disposed young man.", None, Verdict.UNSURE),
    ("My number is", None, Verdict.UNSURE),  # "is" may end a sentence: "that's what it is"
    ("My number is", 0.03, Verdict.UNFINISHED),  # the model hears that it goes on
    ("That's what it is.", 0.93, Verdict.DONE),
    ("Call me at the", None, Verdict.UNFINISHED),
    ("I'd like to order a pizza and", None, Verdict.UNFINISHED),
    ("Well, um", None, Verdict.UNFINISHED),
    ("And Mr. John Dashwood,", 0.95, Verdict.UNFINISHED),  # a comma goes on
    ("Yes, I can.", 0.6, Verdict.DONE),
    ("", 0.9, Verdict.UNFINISHED),
]  # fmt: skip


@pytest.mark.parametrize(("words", "probability", "verdict"), CASES)
def test_a_pause_is_judged_on_its_words_and_the_models_probability(
    words: str, probability: float | None, verdict: Verdict
) -> None:
    assert judge(words, probability) is verdict


# Each threshold just below it and at it: below 0.1 the model is sure the turn goes on; from
# 0.5 a sentence's end in the words ends it; from 0.9 the model alone does.
THRESHOLDS = [
    ("He was happy", 0.0999, Verdict.UNFINISHED),
    ("He was happy", 0.1, Verdict.UNSURE),
    ("He was happy.", 0.4999, Verdict.UNSURE),
    ("He was happy.", 0.5, Verdict.DONE),
    ("He was happy", 0.8999, Verdict.UNSURE),
    ("He was happy", 0.9, Verdict.DONE),
]


@pytest.mark.parametrize(("words", "probability", "verdict"), THRESHOLDS)
def test_the_models_thresholds_are_where_they_were_measured(
    words: str, probability: float, verdict: Verdict
) -> None:
    assert judge(words, probability) is verdict


def test_the_bounded_detectors_flags_and_refusals() -> None:
    settings = from_args(parser().parse_args(["--turn-detector", "bounded", "--max-silence-ms", "2000"]))
    assert (settings.turn_detector, settings.max_silence_ms) == ("bounded", 2000)
    with pytest.raises(ValueError, match="--pause-ms above 0"):
        ConversationSettings(turn_detector="bounded", pause_ms=0)
    with pytest.raises(ValueError, match=r"--max-silence-ms \(500\) must be at least --silence-ms \(600\)"):
        ConversationSettings(turn_detector="bounded", max_silence_ms=500)
