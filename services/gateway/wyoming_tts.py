"""Wyoming text-to-speech: ``synthesize`` and the ``synthesize-*`` stream onto StreamingSynthesize."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from services.gateway.calls import WrittenCall
from services.gateway.channels import Backends
from services.gateway.errors import BadRequest, wyoming_error
from services.gateway.wyoming_info import tts_info
from voice.tts.v1 import tts_pb2

log = logging.getLogger(__name__)

Request = tts_pb2.StreamingSynthesizeRequest
Send = Callable[[Event], Awaitable[None]]
_WIDTH = 2
_CHANNELS = 1


class TtsEventHandler(AsyncEventHandler):
    """One client connection: one-shot ``synthesize`` requests, or text streamed between start and stop."""

    def __init__(
        self, backends: Backends, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self._backends = backends
        self._stream: _Synthesis | None = None
        # Between synthesize-start and synthesize-stop, even after an error ended the synthesis.
        self._streaming = False

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event((await tts_info(self._backends)).event())
            elif Synthesize.is_type(event.type) and not self._streaming:
                request = Synthesize.from_event(event)
                synthesis = await self._open(request.voice)
                await synthesis.write(request.text)
                await synthesis.finish()
            elif SynthesizeStart.is_type(event.type):
                await self._close_stream()
                self._streaming = True
                self._stream = await self._open(SynthesizeStart.from_event(event).voice)
            elif SynthesizeChunk.is_type(event.type) and self._stream is not None:
                await self._stream.write(SynthesizeChunk.from_event(event).text)
            elif SynthesizeStop.is_type(event.type) and self._stream is not None:
                self._streaming = False
                synthesis, self._stream = self._stream, None
                await synthesis.finish()
                await self.write_event(SynthesizeStopped().event())
            elif SynthesizeStop.is_type(event.type):
                self._streaming = False
            # A `synthesize` inside a stream repeats its text for older servers: it is skipped.
        except ConnectionError:
            # The client has gone (Home Assistant closes once it has the answer it needs).
            await self._close_stream()
            return False
        except Exception as exc:
            if not isinstance(exc, grpc.aio.AioRpcError):
                log.exception("wyoming synthesis failed")
            await self._close_stream()
            await self.write_event(wyoming_error(exc).event())
        return True

    async def _open(self, voice: SynthesizeVoice | None) -> _Synthesis:
        config = tts_pb2.SynthesisConfig()
        if voice is not None and voice.name:
            config.voice = voice.name
            config.speaker = voice.speaker or ""
        elif voice is not None and voice.language:
            config.voice = await self._voice_for(voice.language)
        return _Synthesis(self._backends, config, self.write_event)

    async def _voice_for(self, language: str) -> str:
        """The first voice that speaks ``language`` ("en" matches "en_US")."""
        reply = await self._backends.tts.ListVoices(
            tts_pb2.ListVoicesRequest(), timeout=self._backends.info_timeout_s
        )
        wanted = language.replace("-", "_").lower()
        for voice in reply.voices:
            codes = [c.replace("-", "_").lower() for c in voice.language_codes]
            if any(c == wanted or c.split("_")[0] == wanted for c in codes):
                return str(voice.name)
        spoken = sorted({c for v in reply.voices for c in v.language_codes})
        raise BadRequest(f"no voice speaks {language!r}; the voices speak: {', '.join(spoken)}")

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    async def disconnect(self) -> None:
        await self._close_stream()


class _Synthesis(WrittenCall):
    """One StreamingSynthesize call; its audio goes to the client as it comes."""

    def __init__(self, backends: Backends, config: tts_pb2.SynthesisConfig, send: Send) -> None:
        self._call = backends.tts.StreamingSynthesize()
        self._send = send
        self._config: tts_pb2.SynthesisConfig | None = config
        self._started = False
        self._reader = asyncio.create_task(self._read())

    async def write(self, text: str) -> None:
        if self._config is not None:
            await self._safe_write(Request(config=self._config))
            self._config = None
        if text:
            await self._safe_write(Request(text=text))

    async def finish(self) -> None:
        """Wait for the last audio, then end it with ``audio-stop``."""
        await self.write("")
        await self._call.done_writing()
        await self._reader
        await self._send(AudioStop().event())

    async def _read(self) -> None:
        async for response in self._call:
            if response.WhichOneof("response") != "audio":
                continue
            audio = response.audio
            rate = audio.sample_rate_hz
            if not self._started:
                self._started = True
                await self._send(AudioStart(rate=rate, width=_WIDTH, channels=_CHANNELS).event())
            chunk = AudioChunk(rate=rate, width=_WIDTH, channels=_CHANNELS, audio=audio.audio_content)
            await self._send(chunk.event())
