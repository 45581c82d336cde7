"""Streams audio to an SttService the way a client program would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from voice.stt.v1 import stt_pb2, stt_pb2_grpc

CHUNK_BYTES = 3200  # 100 ms at 16 kHz


@dataclass
class StreamOutcome:
    finals: list[stt_pb2.SpeechRecognitionResult] = field(default_factory=list)
    interims: list[stt_pb2.SpeechRecognitionResult] = field(default_factory=list)
    events: list[stt_pb2.SpeechEvent] = field(default_factory=list)
    # Index of the audio chunk being sent when each interim arrived.
    interim_at_chunk: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(f.transcript for f in self.finals)


def requests_for(
    config: stt_pb2.RecognitionConfig,
    utterances: Iterable[bytes],
    *,
    chunk_bytes: int = CHUNK_BYTES,
    pace_s: float = 0.0,
    end_of_utterance: bool = True,
    progress: list[int] | None = None,
) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    async def gen() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=config)
        sent = 0
        for pcm in utterances:
            for start in range(0, len(pcm), chunk_bytes):
                yield stt_pb2.StreamingRecognizeRequest(audio_content=pcm[start : start + chunk_bytes])
                sent += 1
                if progress is not None:
                    progress.append(sent)
                await asyncio.sleep(pace_s)
            if end_of_utterance:
                yield stt_pb2.StreamingRecognizeRequest(end_of_utterance=stt_pb2.EndOfUtterance())

    return gen()


async def stream(
    stub: stt_pb2_grpc.SttServiceStub,
    config: stt_pb2.RecognitionConfig,
    utterances: Iterable[bytes],
    metadata: tuple[tuple[str, str], ...] = (),
    **kwargs: object,
) -> StreamOutcome:
    progress: list[int] = []
    outcome = StreamOutcome()
    requests = requests_for(config, utterances, progress=progress, **kwargs)  # type: ignore[arg-type]
    call = stub.StreamingRecognize(requests, metadata=metadata or None)
    async for response in call:
        for result in response.results:
            if result.is_final:
                outcome.finals.append(result)
            else:
                outcome.interims.append(result)
                outcome.interim_at_chunk.append(len(progress))
        if response.HasField("speech_event"):
            outcome.events.append(response.speech_event)
    return outcome
