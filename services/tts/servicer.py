"""TtsService: protobuf in and out; the work happens in ``session`` and the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc

from services.common.errors import InvalidArgument, stream_errors, unary_errors
from services.tts.audio import duration_ms, to_wav
from services.tts.config import TtsSettings
from services.tts.engine import Engine
from services.tts.session import (
    Audio,
    Cancel,
    Command,
    Event,
    Flush,
    StreamOptions,
    SynthesisSession,
    Text,
    resolve_options,
    synthesize_text,
)
from services.tts.spans import SpeechSpans
from voice.audio.v1 import audio_pb2
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TtsService"].full_name
_ENCODINGS = (audio_pb2.AUDIO_ENCODING_UNSPECIFIED, audio_pb2.AUDIO_ENCODING_LINEAR16)


class TtsServicer(tts_pb2_grpc.TtsServiceServicer):
    """TtsService over one shared engine; synthesis runs on ``settings.workers`` threads."""

    def __init__(self, engine: Engine, settings: TtsSettings) -> None:
        self._engine = engine
        # A reply's audio must fit in one message, with room for the other fields.
        self._max_unary_samples = (settings.max_message_bytes - 1024) // 2
        self._executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="tts-synth")

    def _options(self, config: tts_pb2.SynthesisConfig) -> StreamOptions:
        if config.encoding not in _ENCODINGS:
            raise InvalidArgument("only LINEAR16 audio is produced; set encoding to AUDIO_ENCODING_LINEAR16")
        return resolve_options(
            self._engine.voices(), config.voice, config.sample_rate_hz, config.speaking_rate, config.speaker
        )

    @stream_errors
    async def StreamingSynthesize(
        self,
        request_iterator: AsyncIterator[tts_pb2.StreamingSynthesizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[tts_pb2.StreamingSynthesizeResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        if first.WhichOneof("request") != "config":
            raise InvalidArgument("the first message of a stream must be config; send text after it")
        session = SynthesisSession(self._engine, self._options(first.config), self._executor)
        spans = SpeechSpans()
        try:
            async for event in session.run(_commands(requests, spans)):
                spans.said(event)
                yield _response(event)
        finally:
            spans.close()

    @unary_errors
    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.SynthesizeResponse:
        options = self._options(request.config)
        samples = await synthesize_text(
            self._engine, request.text, options, self._executor, self._max_unary_samples
        )
        pcm = samples.astype("<i2").tobytes()
        rate = options.sample_rate_hz
        if request.container == audio_pb2.AUDIO_CONTAINER_WAV:
            pcm = to_wav(pcm, rate)
        return tts_pb2.SynthesizeResponse(
            audio_content=pcm, sample_rate_hz=rate, duration_ms=duration_ms(len(samples), rate)
        )

    @unary_errors
    async def ListVoices(
        self, request: tts_pb2.ListVoicesRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.ListVoicesResponse:
        voices = self._engine.voices()
        return tts_pb2.ListVoicesResponse(
            voices=[
                tts_pb2.Voice(
                    name=v.name,
                    engine=v.engine,
                    language_codes=v.language_codes,
                    native_sample_rate_hz=v.native_sample_rate_hz,
                    speakers=v.speakers,
                )
                for v in voices
            ],
            default_voice=voices[0].name if voices else "",
        )


async def _commands(
    requests: AsyncIterator[tts_pb2.StreamingSynthesizeRequest], spans: SpeechSpans
) -> AsyncIterator[Command]:
    async for request in requests:
        kind = request.WhichOneof("request")
        if kind in ("text", "flush"):
            spans.asked(request.turn_id, request.traceparent)
        if kind == "text":
            yield Text(request.text, request.turn_id)
        elif kind == "flush":
            yield Flush(request.turn_id)
        elif kind == "cancel":
            yield Cancel(request.turn_id)
        elif kind == "config":
            raise InvalidArgument(
                "config may only be the first message of a stream; open a new stream to change it"
            )


def _response(event: Event) -> tts_pb2.StreamingSynthesizeResponse:
    if isinstance(event, Audio):
        return tts_pb2.StreamingSynthesizeResponse(
            audio=tts_pb2.SynthesizedAudio(
                audio_content=event.pcm,
                sequence_number=event.sequence_number,
                text=event.text,
                sample_rate_hz=event.sample_rate_hz,
                turn_id=event.turn_id,
            )
        )
    return tts_pb2.StreamingSynthesizeResponse(
        done=tts_pb2.SynthesisDone(
            audio_ms=event.audio_ms, chunks=event.chunks, cancelled=event.cancelled, turn_id=event.turn_id
        )
    )
