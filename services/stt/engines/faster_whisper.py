"""faster-whisper (CTranslate2) backend."""

from __future__ import annotations

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from services.stt.config import SttSettings
from services.stt.engine import SAMPLE_RATE_HZ, EngineInfo, Transcript, Word
from services.stt.models import resolve_model
from services.stt.vad import load_vad

_WARMUP_S = 1.0


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
        self._model = WhisperModel(
            resolve_model(settings.model, settings.model_cache_dir),
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.workers,
        )
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
        )
