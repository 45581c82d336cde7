"""SttService: translates between protobuf and the recognition session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
from opentelemetry import trace

from foundation.audio import (
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
    Resampler,
    pcm16_to_float,
    resample,
)
from foundation.tracing import context_of
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    OutOfRange,
    stream_errors,
    unary_errors,
)
from services.stt.config import (
    DEFAULT_END_OF_TURN_THRESHOLD,
    DEFAULT_ENDPOINT_SILENCE_MS,
    DEFAULT_TURN_SILENCE_MS,
    SttSettings,
)
from services.stt.engine import SAMPLE_RATE_HZ, SttEngine, Transcript
from services.stt.session import RecognizeSession, Result, SpeechEvent, SpeechEventType, StreamConfig
from services.stt.turn import INSTALL_HINT, TurnDetector
from voice.audio.v1 import audio_pb2
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

SERVICE_NAME = stt_pb2.DESCRIPTOR.services_by_name["SttService"].full_name
_ENCODINGS = (audio_pb2.AUDIO_ENCODING_UNSPECIFIED, audio_pb2.AUDIO_ENCODING_LINEAR16)
_EVENT_TYPES = {
    SpeechEventType.STARTED: stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED,
    SpeechEventType.ENDED: stt_pb2.SPEECH_EVENT_TYPE_SPEECH_ENDED,
    SpeechEventType.END_OF_TURN: stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN,
    SpeechEventType.TURN_INCOMPLETE: stt_pb2.SPEECH_EVENT_TYPE_TURN_INCOMPLETE,
}
_tracer = trace.get_tracer("voice.stt")
# Voice detection and turn decisions for all streams; a turn decision holds a thread ~0.1 s.
_LISTEN_THREADS = 2


class SttServicer(stt_pb2_grpc.SttServiceServicer):
    def __init__(self, engine: SttEngine, settings: SttSettings) -> None:
        self._engine = engine
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="stt-decode")
        self._listen = ThreadPoolExecutor(max_workers=_LISTEN_THREADS, thread_name_prefix="stt-listen")
        self._turn = TurnDetector(settings.turn_model, settings.turn_threads)

    def load(self) -> None:
        """Load the speech model and, where it is installed, the turn detector (blocking)."""
        self._engine.load()
        if self._turn.available:
            self._turn.load()

    def _session(
        self, config: StreamConfig, emit: Callable[[Result | SpeechEvent], None]
    ) -> RecognizeSession:
        return RecognizeSession(
            self._engine,
            self._executor,
            self._settings,
            config,
            emit,
            listen=self._listen,
            turn=self._turn,
        )

    @stream_errors
    async def StreamingRecognize(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        outbox: asyncio.Queue[stt_pb2.StreamingRecognizeResponse | BaseException | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(request_iterator, outbox))
        try:
            while (item := await outbox.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.cancel()

    async def _read(
        self,
        requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        outbox: asyncio.Queue[stt_pb2.StreamingRecognizeResponse | BaseException | None],
    ) -> None:
        try:
            first = await anext(requests, None)
            if first is None:
                return
            if first.WhichOneof("request") != "config":
                raise InvalidArgument(
                    "the first message must be `config` (a RecognitionConfig); audio came first"
                )
            config = self._stream_config(first.config)
            session = self._session(config, lambda item: outbox.put_nowait(_response(item)))
            resampler = Resampler(first.config.sample_rate_hz, SAMPLE_RATE_HZ, "float32")
            max_s = self._settings.max_stream_s
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "audio_content":
                    await session.add_audio(resampler.feed(request.audio_content))
                    if session.duration_s > max_s:
                        await session.close()
                        raise OutOfRange(
                            f"the stream passed its {max_s:g} s limit (STT_MAX_STREAM_S); "
                            "open a new stream to go on"
                        )
                elif kind == "end_of_utterance":
                    # A child of the client's turn, where the request names it.
                    with _tracer.start_as_current_span("stt.final", context_of(request.traceparent)):
                        await session.finalize(answer=True)
                elif kind == "config":
                    raise InvalidArgument("`config` may only be the first message of a stream")
            await session.add_audio(resampler.flush())
            await session.close()
        except BaseException as exc:
            outbox.put_nowait(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            outbox.put_nowait(None)

    def _stream_config(self, config: stt_pb2.RecognitionConfig) -> StreamConfig:
        if config.encoding not in _ENCODINGS:
            raise InvalidArgument(
                f"unknown audio encoding {config.encoding}; "
                "send LINEAR16 (16-bit signed little-endian mono PCM)"
            )
        if not MIN_SAMPLE_RATE_HZ <= config.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise InvalidArgument(
                f"sample_rate_hz {config.sample_rate_hz} is out of range; "
                f"use {MIN_SAMPLE_RATE_HZ} to {MAX_SAMPLE_RATE_HZ}"
            )
        if config.enable_turn_detection and not self._turn.available:
            raise FailedPrecondition(f"this service has no turn detector: {INSTALL_HINT}")
        if not 0 <= config.end_of_turn_threshold < 1:
            raise InvalidArgument(
                f"end_of_turn_threshold {config.end_of_turn_threshold:g} is out of range; "
                "use a probability below 1, or 0 for the default"
            )
        return StreamConfig(
            language=self._language(config.language_code),
            interim_results=config.interim_results,
            word_timestamps=config.enable_word_time_offsets,
            endpointing=config.enable_endpointing,
            endpoint_silence_ms=config.endpoint_silence_ms or DEFAULT_ENDPOINT_SILENCE_MS,
            turn_detection=config.enable_turn_detection,
            turn_silence_ms=config.turn_silence_ms or DEFAULT_TURN_SILENCE_MS,
            end_of_turn_threshold=config.end_of_turn_threshold or DEFAULT_END_OF_TURN_THRESHOLD,
            pause_interims=config.pause_interims,
        )

    def _language(self, code: str) -> str | None:
        """ISO 639-1 from a code such as "en-US"; None means detect."""
        info = self._engine.info
        language = code.split("-")[0].split("_")[0].lower() or None
        if not info.multilingual:
            if language not in (None, "en"):
                raise InvalidArgument(
                    f"model {info.model} only knows English; "
                    "leave language_code empty, or run the service with STT_MODEL=base for other languages"
                )
            return "en"
        if language is not None and language not in info.languages:
            raise InvalidArgument(
                f"language_code {code!r} is not one of the model's languages: {', '.join(info.languages)}"
            )
        return language

    @unary_errors
    async def Recognize(
        self, request: stt_pb2.RecognizeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.RecognizeResponse:
        config = self._stream_config(request.config)
        if len(request.audio_content) / 2 / request.config.sample_rate_hz > self._settings.max_stream_s:
            raise OutOfRange(f"audio longer than {self._settings.max_stream_s:g} s (STT_MAX_STREAM_S)")
        audio = resample(pcm16_to_float(request.audio_content), request.config.sample_rate_hz, SAMPLE_RATE_HZ)
        response = stt_pb2.RecognizeResponse()
        results: list[Result] = []
        session = self._session(
            replace(config, turn_detection=False),
            lambda item: results.append(item) if isinstance(item, Result) and item.is_final else None,
        )
        # Whole audio goes through the same utterance logic as a stream, minus interims; its end
        # is an end of utterance (a shout the voice detector missed is decoded), and no words no result.
        await session.add_audio(audio)
        await session.finalize(answer=True)
        results = [result for result in results if result.transcript.text]
        for result in results:
            response.results.append(_result(result))
        if results:
            response.language_code = results[0].transcript.language
        return response

    @unary_errors
    async def GetInfo(
        self, request: stt_pb2.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.GetInfoResponse:
        info = self._engine.info
        return stt_pb2.GetInfoResponse(
            model=info.model,
            languages=info.languages,
            multilingual=info.multilingual,
            device=info.device,
            compute_type=info.compute_type,
            min_sample_rate_hz=MIN_SAMPLE_RATE_HZ,
            max_sample_rate_hz=MAX_SAMPLE_RATE_HZ,
            supports_interim_results=True,
            supports_word_time_offsets=True,
            supports_endpointing=True,
            supports_turn_detection=self._turn.available,
            max_stream_duration_s=int(self._settings.max_stream_s),
        )


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _result(result: Result) -> stt_pb2.SpeechRecognitionResult:
    t: Transcript = result.transcript
    return stt_pb2.SpeechRecognitionResult(
        transcript=t.text,
        is_final=result.is_final,
        stability=result.stability,
        start_ms=_ms(t.start_s),
        end_ms=_ms(t.end_s),
        words=[
            stt_pb2.WordInfo(
                word=w.word, start_ms=_ms(w.start_s), end_ms=_ms(w.end_s), probability=w.probability
            )
            for w in t.words
        ],
        language_code=t.language,
        utterance_index=result.utterance_index,
    )


def _response(item: Result | SpeechEvent) -> stt_pb2.StreamingRecognizeResponse:
    if isinstance(item, Result):
        return stt_pb2.StreamingRecognizeResponse(results=[_result(item)])
    return stt_pb2.StreamingRecognizeResponse(
        speech_event=stt_pb2.SpeechEvent(
            type=_EVENT_TYPES[item.type],
            offset_ms=_ms(item.offset_s),
            end_of_turn_probability=item.end_of_turn_probability,
            utterance_index=item.utterance_index,
        )
    )
