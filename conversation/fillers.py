"""Words said while a tool works, so a slow call is no dead air: the model's own words before the
call where it wrote some, else a short phrase from a list, never the same one twice in a row; and
the apology said for a reply that failed before the model wrote a word."""

from __future__ import annotations

import random
from collections.abc import Sequence

from conversation.backchannel import words

# Said when a call has not answered within FILLER_AFTER_S and the model wrote nothing before it.
PHRASES = (
    "One moment.",
    "Let me check.",
    "Just a second.",
    "Let me look that up.",
    "Bear with me a moment.",
    "Checking that now.",
)
# Said when the chat service fails a reply before its first word (a cloud out of reach, say).
APOLOGY = "Sorry, I couldn't answer that just now."
# How long a call may run before a filler is said.
FILLER_AFTER_S = 0.7


class Fillers:
    """Chooses the next filler; the last one said (the model's own words too) is not said next."""

    def __init__(self, phrases: Sequence[str] = PHRASES, seed: int | None = None) -> None:
        self._phrases = tuple(phrases)
        self._random = random.Random(seed)
        self._last: tuple[str, ...] = ()

    def said(self, text: str) -> None:
        """``text`` was said while a tool worked."""
        self._last = words(text)

    def next(self) -> str:
        choices = [p for p in self._phrases if words(p) != self._last] or list(self._phrases)
        phrase = self._random.choice(choices)
        self.said(phrase)
        return phrase


def without(heard: str, fillers: Sequence[str]) -> str:
    """What was heard of a reply, less the fillers said in it (the model did not write them); a
    filler cut midway goes too."""
    heard_words = heard.split()
    for filler in fillers:
        said = filler.split()
        for at in range(len(heard_words)):
            part = heard_words[at : at + len(said)]
            if (
                part
                and part == said[: len(part)]
                and (len(part) == len(said) or at + len(part) == len(heard_words))
            ):
                del heard_words[at : at + len(part)]
                break
    return " ".join(heard_words)
