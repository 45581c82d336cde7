"""The turn-taking sets: read sentences with pauses put in mid-sentence, and short complete turns.

A pause goes in after a word that leaves the sentence plainly unfinished ("he was not |
an ill-disposed young man"), at the quietest 10 ms near that word's end (word times from
Whisper). A pause is digital silence, as the silence after each clip is: these recordings'
own background reads as voiced to the edge client's VAD (webrtcvad), so a pause filled with
it would not be a pause to either detector, and the two would not be tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foundation.audio import RATE_HZ, pcm16_to_float
from harness.speech import Recording, english
from harness.turns import to_pcm, word_ends_s

_WINDOW = RATE_HZ // 100  # 10 ms
# Where each read sentence pauses: (the word before the pause, the pause in ms), 400-900 ms.
PAUSES: dict[str, list[tuple[str, int]]] = {
    "librivox/sense_and_sensibility_01_austen_64kb-0870": [("dashwood", 650), ("power", 900)],
    "librivox/sense_and_sensibility_01_austen_64kb-0880": [("not", 700)],
    "librivox/sense_and_sensibility_01_austen_64kb-0890": [("is", 500)],
    "librivox/sense_and_sensibility_01_austen_64kb-0920": [("woman", 400), ("than", 800)],
    "librivox/sense_and_sensibility_01_austen_64kb-0930": [("been", 600)],
}


@dataclass(frozen=True)
class Clip:
    """One input for the benchmark: 16 kHz LINEAR16 speech, and the pauses put into it."""

    id: str
    pcm: bytes
    text: str  # what is said (the recording's reference transcript)
    pauses_ms: tuple[int, ...] = ()


def sentences(limit: int | None = None) -> list[Recording]:
    return [r for r in english() if r.id in PAUSES][:limit]


def cards(limit: int | None = None) -> list[Recording]:
    """Short spoken card names ("ten of clubs"): each a complete turn."""
    return [r for r in english() if r.id.startswith("cards/")][:limit]


def whole(rec: Recording) -> Clip:
    return Clip(rec.id, rec.pcm(), rec.text)


def paused(rec: Recording) -> Clip:
    """``rec`` with its ``PAUSES`` put in."""
    audio = pcm16_to_float(rec.pcm())
    ends = word_ends_s(rec)
    cuts: list[tuple[int, int]] = []
    for word, pause_ms in PAUSES[rec.id]:
        end_s = next(end for w, end in ends if w == word)
        cuts.append((_quietest(audio, end_s), pause_ms))
    pieces, at = [], 0
    for cut, pause_ms in sorted(cuts):
        pieces += [audio[at:cut], np.zeros(RATE_HZ * pause_ms // 1000, np.float32)]
        at = cut
    pieces.append(audio[at:])
    return Clip(f"{rec.id}+pauses", to_pcm(np.concatenate(pieces)), rec.text, tuple(p for _, p in cuts))


def _quietest(audio: np.ndarray, end_s: float) -> int:
    """The start of the quietest 10 ms from 60 ms before ``end_s`` to 120 ms after it."""
    first = max(0, int((end_s - 0.06) * RATE_HZ))
    starts = range(first, min(len(audio) - _WINDOW, int((end_s + 0.12) * RATE_HZ)), _WINDOW // 2)
    return min(starts, key=lambda s: float(np.mean(audio[s : s + _WINDOW] ** 2)))
