"""Many streams at once against one SttService: each a clip, then end of utterance, then half-close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from harness.speech import Recording
from harness.stt_client import CHUNK_BYTES
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

CHUNK_S = CHUNK_BYTES / 2 / 16000


@dataclass
class StreamEnd:
    """How one stream ended: its finals, and its status (None for OK)."""

    recording: Recording
    finals: list[str] = field(default_factory=list)
    code: grpc.StatusCode | None = None
    details: str = ""
    # end_of_utterance sent -> first final
    latency_ms: float = float("nan")

    @property
    def answered(self) -> bool:
        """A final, or a status that says why not: never an OK stream with nothing in it."""
        return bool(self.finals) or self.code is not None


async def one_stream(
    stub: stt_pb2_grpc.SttServiceStub, recording: Recording, pace: float = 1.0, start_s: float = 0.0
) -> StreamEnd:
    """``recording`` in 100 ms chunks, ``pace`` times real time (0: at once), then end of utterance."""
    await asyncio.sleep(start_s)
    end = StreamEnd(recording)
    pcm = recording.pcm()
    sent_eou = 0.0

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        nonlocal sent_eou
        yield stt_pb2.StreamingRecognizeRequest(config=stt_pb2.RecognitionConfig(sample_rate_hz=16000))
        started = time.perf_counter()
        for i, offset in enumerate(range(0, len(pcm), CHUNK_BYTES)):
            yield stt_pb2.StreamingRecognizeRequest(audio_content=pcm[offset : offset + CHUNK_BYTES])
            if pace:
                await asyncio.sleep(max(0.0, started + (i + 1) * CHUNK_S / pace - time.perf_counter()))
        sent_eou = time.perf_counter()
        yield stt_pb2.StreamingRecognizeRequest(end_of_utterance=stt_pb2.EndOfUtterance())

    try:
        async for response in stub.StreamingRecognize(requests()):
            for result in response.results:
                if result.is_final:
                    if not end.finals:
                        end.latency_ms = (time.perf_counter() - sent_eou) * 1000
                    end.finals.append(result.transcript)
    except grpc.aio.AioRpcError as exc:
        end.code, end.details = exc.code(), exc.details() or ""
    return end


async def many_streams(
    stub: stt_pb2_grpc.SttServiceStub,
    recordings: list[Recording],
    streams: int,
    pace: float = 1.0,
    stagger_s: float = 0.05,
) -> list[StreamEnd]:
    """``streams`` streams at once, started ``stagger_s`` apart, cycling through ``recordings``."""
    return await asyncio.gather(
        *(one_stream(stub, recordings[i % len(recordings)], pace, i * stagger_s) for i in range(streams))
    )
