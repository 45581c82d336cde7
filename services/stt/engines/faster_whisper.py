"""faster-whisper (CTranslate2) backend."""

from __future__ import annotations

import re
import threading

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from services.stt.config import SttSettings
from services.stt.engine import SAMPLE_RATE_HZ, EngineInfo, Transcript, Word
from services.stt.models import resolve_model
from services.stt.vad import load_vad

_WARMUP_S = 1.0
_FRAMES_PER_S = 100
# A decode that says this many words twice in a row has lost its place ("10 of clubs 10 of clubs").
_MIN_REPEATED_WORDS = 3


class _WindowedModel(WhisperModel):
    """Encodes the audio and ``padding_s`` of padding after it, not a whole 30 s window.

    faster-whisper pads every window to 30 s with zero features, and the encoder's cost
    grows with its input. No real audio has an all-zero log-mel column, so the padding is
    found and cut to ``padding_s``. With too little of it the decoder misses the end of the
    audio and repeats itself; such a decode is redone on the whole window.
    """

    padding_s: float = 30.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._whole = threading.local()  # per decode thread: this decode uses the whole window

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        if not getattr(self._whole, "on", False):
            frames = features.shape[-1]
            spoken = np.flatnonzero(np.abs(features.reshape(-1, frames)).max(axis=0))
            end = int(spoken[-1]) + 1 if len(spoken) else 0
            keep = min(frames, end + int(self.padding_s * _FRAMES_PER_S))
            features = features[..., :keep]
        return super().encode(features)

    def whole_window(self, on: bool) -> None:
        self._whole.on = on


class FasterWhisperEngine:
    def __init__(self, settings: SttSettings) -> None:
        self._settings = settings
        self._model: WhisperModel | None = None
        self.info = EngineInfo(
            model=settings.model,
            languages=[],
            multilingual=False,
            device=settings.device,
            compute_type=settings.compute_type,
        )

    def load(self) -> None:
        settings = self._settings
        device = settings.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute_type = settings.compute_type
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        self._model = _WindowedModel(
            resolve_model(settings.model, settings.model_cache_dir),
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.workers,
        )
        self._model.padding_s = settings.encoder_padding_s
        multilingual = bool(self._model.model.is_multilingual)
        self.info = EngineInfo(
            model=settings.model,
            languages=list(self._model.supported_languages) if multilingual else ["en"],
            multilingual=multilingual,
            device=device,
            compute_type=compute_type,
        )
        load_vad()
        # The first decode pays for allocations; pay it before reporting SERVING.
        noise = np.random.default_rng(0).normal(0, 0.01, int(_WARMUP_S * SAMPLE_RATE_HZ))
        self.transcribe(noise.astype(np.float32), "en", word_timestamps=False, beam_size=1)

    def transcribe(
        self, audio: np.ndarray, language: str | None, word_timestamps: bool, beam_size: int
    ) -> Transcript:
        transcript = self._decode(audio, language, word_timestamps, beam_size)
        if _repeats(transcript.text):
            assert self._model is not None
            self._model.whole_window(True)
            try:
                transcript = self._decode(audio, language, word_timestamps, beam_size)
            finally:
                self._model.whole_window(False)
        return transcript

    def _decode(
        self, audio: np.ndarray, language: str | None, word_timestamps: bool, beam_size: int
    ) -> Transcript:
        assert self._model is not None, "load() first"
        segments, info = self._model.transcribe(
            audio,
            language=language if self.info.multilingual or language is None else "en",
            beam_size=beam_size,
            word_timestamps=word_timestamps,
            without_timestamps=not word_timestamps,
            condition_on_previous_text=False,
            # No temperature fallback: re-decoding at higher temperatures costs seconds.
            temperature=0.0,
            vad_filter=False,
        )
        # `segments` is lazy: decoding happens here, in the caller's worker thread.
        kept = [s for s in segments if s.text.strip()]
        words = [Word(w.word.strip(), w.start, w.end, w.probability) for s in kept for w in (s.words or [])]
        return Transcript(
            text=" ".join(s.text.strip() for s in kept),
            language=info.language,
            start_s=kept[0].start if kept else 0.0,
            end_s=kept[-1].end if kept else 0.0,
            words=words,
            no_speech_prob=max((s.no_speech_prob for s in kept), default=0.0),
            avg_logprob=min((s.avg_logprob for s in kept), default=0.0),
            compression_ratio=max((s.compression_ratio for s in kept), default=0.0),
        )


def _repeats(text: str) -> bool:
    """A run of three or more words said twice in a row: a decoder loop, not speech."""
    words = re.sub(r"[^\w\s']", " ", text.lower()).split()
    return any(
        words[i : i + n] == words[i + n : i + 2 * n]
        for n in range(_MIN_REPEATED_WORDS, len(words) // 2 + 1)
        for i in range(len(words) - 2 * n + 1)
    )
