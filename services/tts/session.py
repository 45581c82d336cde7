"""One synthesis stream: text in, pieces synthesized in worker threads, audio chunks out.

Three parts run at once: a reader that cuts incoming text into pieces, a synthesizer
that renders them in order on the shared executor (piece N+1 while N's audio is being
sent), and the caller's loop that sends chunks. A cancel bumps the generation; anything
of an older generation is dropped wherever it is.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from foundation.audio import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, resample
from services.common.errors import InvalidArgument
from services.common.metrics import STAGE_LATENCY
from services.tts.audio import split, trim_silence
from services.tts.engine import Engine, Samples, VoiceInfo, VoiceRequest
from services.tts.text import LEAD_SILENCE_MS, Chunker, Piece, pause_after_ms

MIN_SPEAKING_RATE = 0.5
MAX_SPEAKING_RATE = 2.0
# Chunks (100 ms each) synthesized ahead of what the caller has taken.
MAX_CHUNKS_AHEAD = 300
# Text is cut at about 1 MB/s; longer messages are cut in a thread so other streams flow.
LONG_TEXT_CHARS = 10_000


@dataclass(frozen=True)
class StreamOptions:
    voice: VoiceRequest
    native_sample_rate_hz: int
    sample_rate_hz: int


def resolve_options(
    voices: list[VoiceInfo], voice: str, sample_rate_hz: int, speaking_rate: float, speaker: str
) -> StreamOptions:
    """Check a request's settings against the loaded voices; 0 and empty mean defaults."""
    names = [info.name for info in voices]
    if voice and voice not in names:
        raise InvalidArgument(
            f"unknown voice {voice!r}; choose one of: {', '.join(names)} (empty for the default)"
        )
    info = voices[names.index(voice)] if voice else voices[0]
    if sample_rate_hz and not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise InvalidArgument(
            f"sample_rate_hz {sample_rate_hz} is out of range; choose {MIN_SAMPLE_RATE_HZ} to "
            f"{MAX_SAMPLE_RATE_HZ}, or 0 for the voice's own {info.native_sample_rate_hz}"
        )
    rate = speaking_rate or 1.0
    if not (math.isfinite(rate) and MIN_SPEAKING_RATE <= rate <= MAX_SPEAKING_RATE):
        raise InvalidArgument(
            f"speaking_rate {speaking_rate} is out of range; choose {MIN_SPEAKING_RATE} to "
            f"{MAX_SPEAKING_RATE}, or 0 for 1.0"
        )
    if rate != 1.0 and not info.adjustable_rate:
        raise InvalidArgument(f"voice {info.name!r} cannot change its speaking rate; send 0 or 1.0")
    if speaker and speaker not in info.speakers:
        choices = ", ".join(info.speakers) if info.speakers else "none: it has a single speaker"
        raise InvalidArgument(f"voice {info.name!r} has no speaker {speaker!r}; choose one of: {choices}")
    return StreamOptions(
        voice=VoiceRequest(voice=info.name, speaking_rate=rate, speaker=speaker),
        native_sample_rate_hz=info.native_sample_rate_hz,
        sample_rate_hz=sample_rate_hz or info.native_sample_rate_hz,
    )


def render(engine: Engine, piece: Piece, options: StreamOptions) -> Samples:
    """Blocking: one piece synthesized, its silences trimmed, resampled; run it in a worker thread."""
    samples = engine.synthesize(piece.speech, options.voice)
    rate = options.native_sample_rate_hz
    samples = trim_silence(samples, rate, LEAD_SILENCE_MS, pause_after_ms(piece.text))
    return resample(samples, rate, options.sample_rate_hz)


async def synthesize_text(
    engine: Engine, text: str, options: StreamOptions, executor: Executor, max_samples: int
) -> Samples:
    """The whole of ``text``, synthesized piece by piece so long text never runs as one."""
    chunker = Chunker()
    loop = asyncio.get_running_loop()
    parts: list[Samples] = []
    total = 0
    pieces = await asyncio.to_thread(lambda: chunker.push(text) + chunker.flush())
    for piece in pieces:
        parts.append(await loop.run_in_executor(executor, render, engine, piece, options))
        total += len(parts[-1])
        if total > max_samples:
            limit_s = max_samples / options.sample_rate_hz
            raise InvalidArgument(
                f"the audio for this text is longer than the {limit_s:.0f} s that fit in one reply at "
                f"{options.sample_rate_hz} Hz; use StreamingSynthesize for long text"
            )
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


@dataclass(frozen=True)
class Text:
    text: str
    turn_id: int = 0


@dataclass(frozen=True)
class Flush:
    turn_id: int = 0


@dataclass(frozen=True)
class Cancel:
    turn_id: int = 0


Command = Text | Flush | Cancel


@dataclass(frozen=True)
class Audio:
    pcm: bytes
    sequence_number: int
    # The piece's text on its first chunk, else empty.
    text: str
    sample_rate_hz: int
    turn_id: int = 0


@dataclass(frozen=True)
class Done:
    audio_ms: int
    chunks: int
    cancelled: bool
    turn_id: int = 0


Event = Audio | Done


@dataclass(frozen=True)
class _Piece:
    piece: Piece
    generation: int
    queued_at: float
    turn_id: int


@dataclass(frozen=True)
class _Chunk:
    pcm: bytes
    text: str
    generation: int
    queued_at: float
    turn_id: int


@dataclass(frozen=True)
class _Mark:
    """Where a SynthesisDone goes: after a flush, a cancel or the end of input."""

    generation: int
    turn_id: int
    cancelled: bool = False
    end: bool = False


class SynthesisSession:
    """Per-stream state; the engine and the executor are shared by every stream."""

    def __init__(self, engine: Engine, options: StreamOptions, executor: Executor) -> None:
        self._engine = engine
        self._options = options
        self._executor = executor
        self._chunker = Chunker()
        self._generation = 0
        self._turn_id = 0  # of the text the chunker holds
        self._work: asyncio.Queue[_Piece | _Mark] = asyncio.Queue()
        self._out: asyncio.Queue[_Chunk | _Mark | BaseException] = asyncio.Queue()
        self._taken = asyncio.Event()
        self._cancelled = asyncio.Event()  # a cancel came during the current synthesis

    async def run(self, commands: AsyncIterator[Command]) -> AsyncIterator[Event]:
        """Events for ``commands`` until they end and all their audio is out."""
        tasks = [asyncio.create_task(self._read(commands)), asyncio.create_task(self._synthesize())]
        rate = self._options.sample_rate_hz
        sequence = chunks = samples = 0
        try:
            while True:
                item = await self._out.get()
                self._taken.set()
                if isinstance(item, BaseException):
                    raise item
                if item.generation != self._generation:
                    continue
                if isinstance(item, _Mark):
                    yield Done(samples * 1000 // rate, chunks, item.cancelled, item.turn_id)
                    chunks = samples = 0
                    if item.end:
                        return
                    continue
                if chunks == 0:
                    STAGE_LATENCY.labels("tts", "first_audio").observe(time.perf_counter() - item.queued_at)
                yield Audio(item.pcm, sequence, item.text, rate, item.turn_id)
                sequence += 1
                chunks += 1
                samples += len(item.pcm) // 2
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, commands: AsyncIterator[Command]) -> None:
        try:
            async for command in commands:
                if command.turn_id != self._turn_id:
                    # Text of one turn is never spoken in a piece of another's.
                    self._queue(self._chunker.flush())
                    self._turn_id = command.turn_id
                if isinstance(command, Text) and len(command.text) >= LONG_TEXT_CHARS:
                    self._queue(await asyncio.to_thread(self._chunker.push, command.text))
                elif isinstance(command, Text):
                    self._queue(self._chunker.push(command.text))
                elif isinstance(command, Flush):
                    self._queue(self._chunker.flush())
                    self._work.put_nowait(_Mark(self._generation, self._turn_id))
                else:
                    self._cancel()
            self._queue(self._chunker.flush())
            self._work.put_nowait(_Mark(self._generation, self._turn_id, end=True))
        except Exception as exc:
            self._out.put_nowait(exc)

    def _queue(self, pieces: list[Piece]) -> None:
        now = time.perf_counter()
        for piece in pieces:
            self._work.put_nowait(_Piece(piece, self._generation, now, self._turn_id))

    def _cancel(self) -> None:
        self._generation += 1
        self._cancelled.set()
        self._chunker.clear()
        while not self._work.empty():
            self._work.get_nowait()
        errors = []
        while not self._out.empty():
            if isinstance(item := self._out.get_nowait(), BaseException):
                errors.append(item)
        for error in errors:
            self._out.put_nowait(error)
        self._out.put_nowait(_Mark(self._generation, self._turn_id, cancelled=True))

    async def _synthesize(self) -> None:
        loop = asyncio.get_running_loop()
        rate = self._options.sample_rate_hz
        try:
            while True:
                item = await self._work.get()
                if item.generation != self._generation:
                    continue
                if isinstance(item, _Mark):
                    self._out.put_nowait(item)
                    continue
                while self._out.qsize() >= MAX_CHUNKS_AHEAD:
                    self._taken.clear()
                    await self._taken.wait()
                if item.generation != self._generation:
                    continue  # cancelled while the listener caught up
                started = time.perf_counter()
                self._cancelled.clear()
                rendering = loop.run_in_executor(
                    self._executor, render, self._engine, item.piece, self._options
                )
                cancelled = asyncio.ensure_future(self._cancelled.wait())
                waiters: list[asyncio.Future[Any]] = [rendering, cancelled]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    cancelled.cancel()
                if item.generation != self._generation:
                    # Cancelled: the next turn's text goes to another worker at once; the
                    # piece under way finishes in its thread, and nobody reads it.
                    rendering.add_done_callback(lambda f: f.cancelled() or f.exception())
                    continue
                samples = rendering.result()
                STAGE_LATENCY.labels("tts", "synthesize").observe(time.perf_counter() - started)
                for index, pcm in enumerate(split(samples, rate)):
                    text = item.piece.text if index == 0 else ""
                    self._out.put_nowait(_Chunk(pcm, text, item.generation, item.queued_at, item.turn_id))
        except Exception as exc:
            self._out.put_nowait(exc)
