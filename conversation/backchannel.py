"""Backchannels: what a listener says over a reply ("mm-hmm", "yeah", "okay") to show they follow.

Such words over the agent's reply are no turn: the reply goes on and the chat model never
sees them. Anything else ("wait", "no, I meant...", a question) interrupts as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A short list per language; a transcript made only of these (repeats too) is a backchannel.
BACKCHANNELS = {
    "en": (
        "mm-hmm", "mhm", "mmhmm", "mm", "hmm", "uh-huh", "uh huh", "yeah", "yep", "yes",
        "okay", "ok", "right", "sure", "all right", "alright", "i see", "got it", "oh", "ah",
        "wow", "cool", "nice", "yup", "yes sir", "mmm", "hm", "mhmm",
    ),
    "ru": ("угу", "ага", "да", "ну да", "так", "ясно", "понятно", "хорошо"),
}  # fmt: skip
DEFAULT_BACKCHANNELS = tuple(phrase for phrases in BACKCHANNELS.values() for phrase in phrases)


def words(text: str) -> tuple[str, ...]:
    """Lower-case words, without punctuation: "Mm-hmm, yeah." -> ("mm", "hmm", "yeah")."""
    return tuple(re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.lower()))


class Backchannels:
    """Says whether a transcript is nothing but backchannel phrases."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self._phrases = {w for phrase in phrases if (w := words(phrase))}

    def __bool__(self) -> bool:
        return bool(self._phrases)

    def __contains__(self, text: str) -> bool:
        said = words(text)
        # ends[i]: the first i words are a run of phrases.
        ends = [True] + [False] * len(said)
        for i in range(len(said)):
            if ends[i]:
                for phrase in self._phrases:
                    if said[i : i + len(phrase)] == phrase:
                        ends[i + len(phrase)] = True
        return bool(said) and ends[-1]
