"""Wyoming speech-to-text: ``transcribe`` and ``audio-*`` events onto one StreamingRecognize call each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.server import AsyncEventHandler

from services.gateway.calls import WrittenCall
from services.gateway.channels import Backends
from services.gateway.config import GatewaySettings
from services.gateway.errors import wyoming_error
from services.gateway.wyoming_info import stt_info
from voice.stt.v1 import stt_pb2

log = logging.getLogger(__name__)

Request = stt_pb2.StreamingRecognizeRequest
# Our STT service takes 16-bit mono at any rate from 8 to 48 kHz; it resamples itself.
_WIDTH = 2
_CHANNELS = 1

Send = Callable[[Event], Awaitable[None]]


class SttEventHandler(AsyncEventHandler):
    """One client connection; each audio-start .. audio-stop is one recognition stream."""

    def __init__(
        self,
        backends: Backends,
        settings: GatewaySettings,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(reader, writer)
        self._backends = backends
        self._streaming = settings.transcript_streaming
        self._language = ""
        self._stream: _Recognition | None = None
        # After an error, the rest of that request's audio is dropped: one error answers it.
        self._failed = False

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event((await stt_info(self._backends, self._streaming)).event())
            elif Transcribe.is_type(event.type):
                self._language = Transcribe.from_event(event).language or ""
                self._failed = False
            elif AudioStart.is_type(event.type):
                await self._close_stream()
                self._failed = False
                self._stream = self._open(AudioStart.from_event(event).rate)
            elif self._failed:
                self._failed = not AudioStop.is_type(event.type)
            elif AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                if self._stream is None:
                    self._stream = self._open(chunk.rate)
                await self._stream.write(chunk)
            elif AudioStop.is_type(event.type):
                stream, self._stream = self._stream, None
                await self._answer(stream)
        except ConnectionError:
            # The client has gone (Home Assistant closes once it has the answer it needs).
            await self._close_stream()
            return False
        except Exception as exc:
            if not isinstance(exc, grpc.aio.AioRpcError):
                log.exception("wyoming transcription failed")
            await self._close_stream()
            self._failed = True
            await self.write_event(wyoming_error(exc).event())
        return True

    def _open(self, rate: int) -> _Recognition:
        config = stt_pb2.RecognitionConfig(
            sample_rate_hz=rate,
            language_code=self._language,
            enable_endpointing=self._streaming,
        )
        return _Recognition(self._backends, config, self._streaming, self.write_event)

    async def _answer(self, stream: _Recognition | None) -> None:
        finals: list[stt_pb2.SpeechRecognitionResult] = []
        if stream is not None:
            finals = await stream.finish()
        text = " ".join(r.transcript.strip() for r in finals if r.transcript.strip())
        language = next((r.language_code for r in finals if r.language_code), None) or self._language or None
        if self._streaming and (stream is None or not stream.started):
            await self.write_event(TranscriptStart(language=language).event())
        await self.write_event(Transcript(text=text, language=language).event())
        if self._streaming:
            await self.write_event(TranscriptStop().event())

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    async def disconnect(self) -> None:
        await self._close_stream()


class _Recognition(WrittenCall):
    """One StreamingRecognize call: audio in, finals out (as transcript chunks when streaming)."""

    def __init__(self, backends: Backends, config: stt_pb2.RecognitionConfig, streaming: bool, send: Send):
        self._call = backends.stt.StreamingRecognize()
        self._converter = AudioChunkConverter(rate=config.sample_rate_hz, width=_WIDTH, channels=_CHANNELS)
        self._streaming = streaming
        self._send = send
        self._config_sent = False
        self._config = config
        self.started = False
        self._finals: list[stt_pb2.SpeechRecognitionResult] = []
        self._reader = asyncio.create_task(self._read())

    async def write(self, chunk: AudioChunk) -> None:
        if not self._config_sent:
            self._config_sent = True
            await self._safe_write(Request(config=self._config))
        await self._safe_write(Request(audio_content=self._converter.convert(chunk).audio))

    async def finish(self) -> list[stt_pb2.SpeechRecognitionResult]:
        if not self._config_sent:
            self.cancel()
            return []
        await self._safe_write(Request(end_of_utterance=stt_pb2.EndOfUtterance()))
        await self._call.done_writing()
        await self._reader
        return self._finals

    async def _read(self) -> None:
        async for response in self._call:
            for result in response.results:
                if not result.is_final:
                    continue
                text = result.transcript.strip()
                if self._streaming and text:
                    if not self.started:
                        self.started = True
                        await self._send(TranscriptStart(language=result.language_code or None).event())
                    lead = " " if self._finals else ""
                    await self._send(TranscriptChunk(text=lead + text).event())
                self._finals.append(result)
