"""Whole sentences and the same sentences cut before their last words, for the turn tests.

Word times come from Whisper (tiny.en, the service's model) on the shared recordings.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from foundation.audio import pcm16_to_float
from harness.speech import Recording, english
from services.stt.models import tiny_en_path

# Long read sentences, and a word after which each is plainly unfinished:
# "unless to be rather cold-hearted and rather selfish is | to be ill-disposed",
# "had he married a more amiable woman, he might have been made still more respectable than | he was".
UNFINISHED_AFTER = {"librivox/sense_and_sensibility_01_austen_64kb-0890": "is"}
UNFINISHED_AFTER["librivox/sense_and_sensibility_01_austen_64kb-0920"] = "than"


def sentences() -> list[Recording]:
    return [r for r in english() if r.id in UNFINISHED_AFTER]


@cache
def word_ends_s(rec: Recording) -> list[tuple[str, float]]:
    """(word, end in seconds) for each word Whisper hears in ``rec``."""
    from faster_whisper import WhisperModel

    model = WhisperModel(tiny_en_path(), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(
        pcm16_to_float(rec.pcm()), language="en", word_timestamps=True, condition_on_previous_text=False
    )
    return [(w.word.strip(" ,.").lower(), w.end) for s in segments for w in s.words or []]


def whole(rec: Recording) -> np.ndarray:
    """The sentence up to the end of its last word (16 kHz float32)."""
    return pcm16_to_float(rec.pcm())[: int(word_ends_s(rec)[-1][1] * 16000)]


def cut(rec: Recording) -> np.ndarray:
    """The sentence up to the end of its last ``UNFINISHED_AFTER`` word: its last words are missing."""
    end_s = [end for word, end in word_ends_s(rec) if word == UNFINISHED_AFTER[rec.id]][-1]
    assert end_s < word_ends_s(rec)[-1][1] - 0.3
    return pcm16_to_float(rec.pcm())[: int(end_s * 16000)]


def to_pcm(audio: np.ndarray) -> bytes:
    return bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
