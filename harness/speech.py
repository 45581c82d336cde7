"""The shared recordings and how transcripts are scored against them."""

from __future__ import annotations

import json
import os
import wave
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jiwer
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

from foundation.audio import float_to_pcm16, pcm16_to_float, resample

REPO = Path(__file__).resolve().parent.parent
SPEECH_DIR = Path(os.environ.get("VOICE_SPEECH_DIR", REPO.parent / "shared" / "data" / "speech"))
BACKCHANNEL_DIR = REPO / "tests" / "data" / "backchannels"
INTERRUPTION_DIR = REPO / "tests" / "data" / "interruptions"
SHOUT_DIR = REPO / "tests" / "data" / "shouts"


@dataclass(frozen=True)
class Recording:
    id: str
    path: Path
    text: str
    duration_s: float
    language: str

    def pcm(self) -> bytes:
        """LINEAR16 mono at 16 kHz."""
        with wave.open(str(self.path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            return bytes(w.readframes(w.getnframes()))


def _manifest(folder: Path) -> list[Recording]:
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line]
    return [
        Recording(r["id"], folder / r["audio"], r["text"], r["duration_s"], r.get("language", "en"))
        for r in rows
    ]


@cache
def recordings() -> list[Recording]:
    return _manifest(SPEECH_DIR)


@cache
def backchannels() -> list[Recording]:
    """A listener's "okay", "yes", "yeah", "sure", "yep", said by real voices (tests/data/backchannels)."""
    return _manifest(BACKCHANNEL_DIR)


@cache
def interruptions() -> list[Recording]:
    """A user cutting in: "what?", "hey!", "no", "hold position", real voices (tests/data/interruptions)."""
    return _manifest(INTERRUPTION_DIR)


@cache
def shouts(kind: str) -> list[Recording]:
    """Short words said loudly or acted (tests/data/shouts): ``kind`` "interruption" ("No!",
    "Hello?", "Wait, what?") or "backchannel" ("Yes, sir!", "Mm")."""
    rows = [json.loads(line) for line in (SHOUT_DIR / "manifest.jsonl").read_text().splitlines() if line]
    ids = {r["id"] for r in rows if r["kind"] == kind}
    return [r for r in _manifest(SHOUT_DIR) if r.id in ids]


def english() -> list[Recording]:
    return [r for r in recordings() if r.language == "en"]


def russian() -> list[Recording]:
    return [r for r in recordings() if r.language == "ru"]


_EN = EnglishTextNormalizer()
_BASIC = BasicTextNormalizer()


def normalize(text: str, language: str = "en") -> str:
    """Whisper's normaliser: case, punctuation, and for English spelled numbers ("ten" -> "10").

    Its English one leaves a full stop after "no" ("No..." -> "no ."): lone punctuation goes.
    """
    words = (_EN(text) if language == "en" else _BASIC(text)).split()
    return " ".join(w for w in words if any(c.isalnum() for c in w))


def _error_rate(
    measure: Callable[[str, str], float], reference: str, hypothesis: str, language: str
) -> float:
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(measure(ref, hyp))


def wer(reference: str, hypothesis: str, language: str = "en") -> float:
    return _error_rate(jiwer.wer, reference, hypothesis, language)


def cer(reference: str, hypothesis: str, language: str = "en") -> float:
    """Character error rate, for replies of a word or two, which Whisper mishears by a letter
    ("Paris" as "harris") more often than a sentence by a word."""
    return _error_rate(jiwer.cer, reference, hypothesis, language)


def corpus_wer(pairs: list[tuple[str, str]], language: str = "en") -> float:
    refs = [normalize(r, language) for r, _ in pairs]
    hyps = [normalize(h, language) for _, h in pairs]
    return float(jiwer.wer(refs, hyps))


def at_rate(pcm: bytes, rate_hz: int) -> bytes:
    """16 kHz LINEAR16 at ``rate_hz`` (a Realtime client's 24 kHz, a browser microphone's 48 kHz)."""
    return float_to_pcm16(resample(pcm16_to_float(pcm), 16_000, rate_hz))
