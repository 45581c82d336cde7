"""The STT engine contract: one loaded model shared by every stream."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.common.errors import ConfigError
from services.stt.config import SttSettings

# Every engine takes 16 kHz mono float32 audio; the servicer resamples to it.
SAMPLE_RATE_HZ = 16000


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    # Offsets in seconds from the start of the audio given to ``transcribe``.
    start_s: float = 0.0
    end_s: float = 0.0
    words: list[Word] = field(default_factory=list)
    # The model's own evidence that the audio held these words (the worst of its segments):
    # Whisper's probability of no speech, its mean token log-probability, the text's gzip ratio.
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0


@dataclass(frozen=True)
class EngineInfo:
    model: str
    languages: list[str]
    multilingual: bool
    device: str
    compute_type: str


class SttEngine(Protocol):
    info: EngineInfo

    def load(self) -> None:
        """Load and warm the model (blocking; called once before serving)."""

    def transcribe(
        self, audio: np.ndarray, language: str | None, word_timestamps: bool, beam_size: int
    ) -> Transcript:
        """Transcribe 16 kHz float32 audio (blocking; run it in a worker thread)."""


_ENGINES = {"faster-whisper": "services.stt.engines.faster_whisper:FasterWhisperEngine"}


def create_engine(settings: SttSettings, name: str = "faster-whisper") -> SttEngine:
    """Build (not load) the engine named ``name``."""
    module_name, _, attr = _ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {name} engine needs the stt extra: pip install 'voice-agent[stt]' ({exc})"
        ) from exc
    engine: SttEngine = getattr(module, attr)(settings)
    return engine
