"""Which transcripts over a reply are only a listener's backchannel, and which interrupt it."""

from __future__ import annotations

import pytest

from conversation.backchannel import DEFAULT_BACKCHANNELS, Backchannels
from edge_client.config import from_args, parser

DEFAULT = Backchannels(DEFAULT_BACKCHANNELS)

# Whisper's spellings of what listeners say, as the STT service returns them.
BACKCHANNEL_TRANSCRIPTS = [
    "Mm-hmm.", "Mm hmm", "Mhm.", "Hmm.", "Uh-huh.", "Yeah.", "Yeah, yeah.", "Okay.", "OK",
    "Right.", "Yes.", "Sure.", "All right.", "I see.", "Oh, okay.", "Got it.", "Угу.", "Ага.", "Да, да.",
    # tiny.en's forms of short or hummed acknowledgements (tests/data/shouts, tests/data/backchannels)
    "Mm.", "MMM", "Mmm.", "Hm.", "Yup.", "Yes, sir!", "Yes sir!", "Mm-hmm", "Uh-huh", "okay", "yeah", "right",
]  # fmt: skip
INTERRUPTIONS = [
    "Wait.", "Stop.", "No.", "No, I meant the other one.", "Wait, stop.", "Yeah, but why?",
    "Okay, what about tomorrow?", "What?", "Thank you.", "Hold on.", "Нет.", "",
    # shouted (tests/data/shouts): a lone "no" now and then comes back as "No... No..."
    "No!", "No... No...", "No way!", "Hey!", "Hello?", "What the...", "Wait, what?", "Stop!", "Yes, but…",
]  # fmt: skip


@pytest.mark.parametrize("text", BACKCHANNEL_TRANSCRIPTS)
def test_a_listeners_word_over_the_reply_is_a_backchannel(text: str) -> None:
    assert text in DEFAULT


@pytest.mark.parametrize("text", INTERRUPTIONS)
def test_anything_more_than_backchannel_words_interrupts(text: str) -> None:
    assert text not in DEFAULT


def test_the_list_comes_from_the_flag_and_can_be_empty() -> None:
    only_yeah = Backchannels(from_args(parser().parse_args(["--backchannels", "yeah, uh-huh"])).backchannels)
    assert "Yeah." in only_yeah and "Uh huh" in only_yeah and "Okay." not in only_yeah
    none = Backchannels(from_args(parser().parse_args(["--backchannels", ""])).backchannels)
    assert not none and "Yeah." not in none
    assert from_args(parser().parse_args([])).backchannels == DEFAULT_BACKCHANNELS
