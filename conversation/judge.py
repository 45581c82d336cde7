"""Is the user's turn over? A pause judged from the words said so far and the end-of-turn model.

With ``--turn-detector bounded`` the turn ends at once when it is plainly done, after the
normal silence when unsure, and only after the longest silence when the words are plainly
unfinished ("I'd like a pizza and", "he was not", "call me at the") or the model is sure they go
on. "Is" is no such ending: "my number is" might be all there is to say ("that's what it is"),
so without the model it waits the normal silence.
"""

from __future__ import annotations

from enum import Enum

from conversation.backchannel import words

# Words a sentence seldom ends on: conjunctions, articles, prepositions, possessives, fillers.
# Not pronouns or verbs ("I love you", "yes I can", "than he was"). A short list per language.
UNFINISHED_ENDINGS = {
    "en": (
        "and", "but", "or", "nor", "so", "because", "if", "when", "while", "than", "that", "which",
        "whose", "where", "the", "a", "an", "to", "of", "in", "on", "at", "for", "with", "from", "by",
        "about", "into", "like", "as", "my", "your", "his", "their", "our", "its", "not", "been",
        "um", "uh", "er", "erm",
    ),
    "ru": (
        "и", "а", "но", "или", "что", "чтобы", "если", "когда", "потому", "в", "на", "с", "к", "по",
        "о", "у", "не",
    ),
}  # fmt: skip
_UNFINISHED = frozenset(w for endings in UNFINISHED_ENDINGS.values() for w in endings)
# Punctuation Whisper ends a finished sentence with; a comma or dash says it goes on.
_DONE_MARKS = (".", "?", "!", "。", "？", "！")
# End-of-turn probabilities below which the model is sure the turn goes on, from which finished
# words end the turn, and from which it is sure it is done. Smart Turn v3.2 on the read
# sentences here: 0.87-0.99 on nine of ten whole ones (0.08 on one), 0.01-0.07 at the pauses
# put inside them.
_GOES_ON, _LIKELY, _SURE = 0.1, 0.5, 0.9


class Verdict(Enum):
    DONE = "done"  # end the turn now
    UNSURE = "unsure"  # wait the normal silence
    UNFINISHED = "unfinished"  # wait up to the longest silence


def judge(text: str, probability: float | None) -> Verdict:
    """The verdict on a pause from its transcript so far and, where the service has the model,
    the end-of-turn probability (None: no model, or no decision yet).

    Unfinished words win over the model, and so does a model sure the turn goes on. Done needs
    the model's word for it and a sentence's end in the words, or the model sure of it
    (Whisper leaves short answers unpunctuated: "10 of clubs"); a question mark suffices
    without the model.
    """
    said = words(text)
    stripped = text.rstrip()
    if not said or said[-1] in _UNFINISHED or stripped.endswith((",", "-", "—", "...", "…")):
        return Verdict.UNFINISHED
    if probability is None:
        return Verdict.DONE if stripped.endswith("?") else Verdict.UNSURE
    if probability < _GOES_ON:
        return Verdict.UNFINISHED
    if probability >= _SURE or (probability >= _LIKELY and stripped.endswith(_DONE_MARKS)):
        return Verdict.DONE
    return Verdict.UNSURE
