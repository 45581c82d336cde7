"""One recognition stream: utterance buffering, speculative decoding, finals.

Audio arrives at 16 kHz. A Silero detector marks speech; decoding runs in the
shared worker pool while the user still speaks (interims) and as soon as a
short pause follows speech. Every decode runs at full quality, so when the end
of the utterance is declared and no speech came after the last decode, that
decode is the final and returns at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import numpy as np

from services.common.metrics import STAGE_LATENCY
from services.stt.config import MAX_UTTERANCE_S, SttSettings
from services.stt.engine import SAMPLE_RATE_HZ, SttEngine, Transcript, Word
from services.stt.vad import WINDOW_SAMPLES, SpeechDetector

# Speech needs this many voiced windows (~100 ms) to start an utterance...
_MIN_SPEECH_WINDOWS = 3
# ...and this much voiced audio in all to be worth decoding (coughs and clicks are not).
_MIN_SPEECH_S = 0.2
# Audio kept before the first voiced window, so the first syllable is whole.
_PRE_ROLL_S = 0.3


@dataclass(frozen=True)
class StreamConfig:
    language: str | None
    interim_results: bool
    word_timestamps: bool
    endpointing: bool
    endpoint_silence_ms: int


@dataclass(frozen=True)
class Result:
    transcript: Transcript  # offsets from the first sample of the stream
    is_final: bool
    stability: float
    utterance_index: int


@dataclass(frozen=True)
class SpeechEvent:
    started: bool  # False: the service's endpointer ended the utterance
    offset_s: float


@dataclass
class _Decode:
    task: asyncio.Future[Transcript]
    until: int  # stream sample index the decoded audio reaches


@dataclass
class _Utterance:
    index: int
    start: int  # stream sample index of chunks[0]
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    voiced_windows: int = 0
    run: int = 0  # consecutive voiced windows
    first_voiced: int | None = None
    last_voiced: int = 0  # stream sample index where the last voiced window ends
    started: bool = False
    best: tuple[int, Transcript] | None = None  # latest decode: (until, transcript)
    last_interim: str = ""
    interim_started_at: float = 0.0

    @property
    def has_speech(self) -> bool:
        return self.started and self.voiced_windows * WINDOW_SAMPLES >= _MIN_SPEECH_S * SAMPLE_RATE_HZ


class RecognizeSession:
    def __init__(
        self,
        engine: SttEngine,
        executor: Executor,
        settings: SttSettings,
        config: StreamConfig,
        emit: Callable[[Result | SpeechEvent], None],
    ) -> None:
        self._engine = engine
        self._executor = executor
        self._settings = settings
        self._config = config
        self._emit = emit
        self._detector = SpeechDetector(settings.vad_threshold)
        self._total = 0  # samples received in the stream
        self._windows = 0  # VAD windows judged so far
        self._utt = _Utterance(index=0, start=0)
        self._decode: _Decode | None = None

    @property
    def duration_s(self) -> float:
        return self._total / SAMPLE_RATE_HZ

    async def add_audio(self, audio: np.ndarray) -> None:
        utt = self._utt
        utt.chunks.append(audio)
        utt.samples += len(audio)
        self._total += len(audio)
        for voiced in self._detector.push(audio):
            self._windows += 1
            self._on_window(voiced, self._windows * WINDOW_SAMPLES)
        if not utt.voiced_windows:
            self._drop_leading_silence()
        if utt.samples / SAMPLE_RATE_HZ >= MAX_UTTERANCE_S:
            await self.finalize()
        elif self._config.endpointing and self._silence_ms() >= self._config.endpoint_silence_ms:
            self._emit(SpeechEvent(started=False, offset_s=utt.last_voiced / SAMPLE_RATE_HZ))
            await self.finalize()
        else:
            self._maybe_decode()

    def _on_window(self, voiced: bool, end: int) -> None:
        utt = self._utt
        if not voiced:
            utt.run = 0
            return
        utt.run += 1
        utt.voiced_windows += 1
        utt.last_voiced = end
        if utt.first_voiced is None:
            utt.first_voiced = end - WINDOW_SAMPLES
        if not utt.started and utt.run >= _MIN_SPEECH_WINDOWS:
            utt.started = True
            utt.interim_started_at = time.monotonic()
            start = end - utt.run * WINDOW_SAMPLES
            self._emit(SpeechEvent(started=True, offset_s=start / SAMPLE_RATE_HZ))

    def _drop_leading_silence(self) -> None:
        utt = self._utt
        keep = int(_PRE_ROLL_S * SAMPLE_RATE_HZ)
        excess = utt.samples - keep
        while utt.chunks and excess >= len(utt.chunks[0]):
            dropped = utt.chunks.pop(0)
            utt.samples -= len(dropped)
            utt.start += len(dropped)
            excess -= len(dropped)

    def _silence_ms(self) -> float:
        if not self._utt.has_speech:
            return 0.0
        return (self._total - self._utt.last_voiced) * 1000 / SAMPLE_RATE_HZ

    def _maybe_decode(self) -> None:
        utt = self._utt
        if self._decode is not None or not utt.has_speech:
            return
        covered = utt.best is not None and utt.best[0] >= utt.last_voiced
        if not covered and self._silence_ms() >= self._settings.speculate_silence_ms:
            self._decode = self._start_decode(utt)
        elif (
            self._config.interim_results
            and time.monotonic() - utt.interim_started_at >= self._settings.interim_interval_ms / 1000
        ):
            utt.interim_started_at = time.monotonic()
            self._decode = self._start_decode(utt)

    def _start_decode(self, utt: _Utterance) -> _Decode:
        assert utt.first_voiced is not None
        begin = max(utt.start, utt.first_voiced - int(_PRE_ROLL_S * SAMPLE_RATE_HZ))
        audio = np.concatenate(utt.chunks)[begin - utt.start :]
        beam = self._settings.beam_size
        config = self._config
        offset_s = begin / SAMPLE_RATE_HZ

        def work() -> Transcript:
            started = time.perf_counter()
            text = self._engine.transcribe(audio, config.language, config.word_timestamps, beam)
            STAGE_LATENCY.labels("stt", "decode").observe(time.perf_counter() - started)
            return _shift(text, offset_s)

        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(loop.run_in_executor(self._executor, work))
        decode = _Decode(task, utt.start + utt.samples)
        task.add_done_callback(lambda _: self._on_decoded(decode, utt))
        return decode

    def _on_decoded(self, decode: _Decode, utt: _Utterance) -> None:
        if self._decode is decode:
            self._decode = None
        if utt is not self._utt or decode.task.cancelled() or decode.task.exception() is not None:
            return
        transcript = decode.task.result()
        utt.best = (decode.until, transcript)
        if self._config.interim_results and transcript.text and transcript.text != utt.last_interim:
            stability = _stability(utt.last_interim, transcript.text)
            utt.last_interim = transcript.text
            self._emit(Result(transcript, is_final=False, stability=stability, utterance_index=utt.index))
        self._maybe_decode()

    async def finalize(self) -> None:
        """End the current utterance: emit its final (if it held speech) and start the next."""
        utt = self._utt
        self._utt = _Utterance(index=utt.index + int(utt.has_speech), start=self._total)
        running, self._decode = self._decode, None
        if not utt.has_speech:
            return
        started = time.perf_counter()
        if running is not None:
            # A decode of this utterance is under way: it may already be the final.
            utt.best = (running.until, await running.task)
        if utt.best is None or utt.best[0] < utt.last_voiced:
            utt.best = (utt.last_voiced, await self._start_decode(utt).task)
        STAGE_LATENCY.labels("stt", "finalize").observe(time.perf_counter() - started)
        if utt.best[1].text:
            self._emit(Result(utt.best[1], is_final=True, stability=1.0, utterance_index=utt.index))

    async def close(self) -> None:
        """Finalise what is pending and wait for in-flight decodes."""
        await self.finalize()


def _shift(transcript: Transcript, offset_s: float) -> Transcript:
    return replace(
        transcript,
        start_s=transcript.start_s + offset_s,
        end_s=transcript.end_s + offset_s,
        words=[
            Word(w.word, w.start_s + offset_s, w.end_s + offset_s, w.probability) for w in transcript.words
        ],
    )


def _stability(previous: str, current: str) -> float:
    """Share of the current interim's words that the previous interim already had, in order."""
    old, new = previous.split(), current.split()
    same = 0
    for a, b in zip(old, new, strict=False):
        if a != b:
            break
        same += 1
    return same / len(new) if new else 0.0
