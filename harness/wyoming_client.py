"""Wyoming requests the way Home Assistant makes them, through the ``wyoming`` library's own client."""

from __future__ import annotations

from dataclasses import dataclass, field

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.tts import Synthesize, SynthesizeVoice

CHUNK_BYTES = 3200  # 100 ms at 16 kHz, 16-bit mono
READ_TIMEOUT_S = 60.0


class WyomingError(Exception):
    pass


@dataclass
class Heard:
    text: str
    # Event types in the order they came, from the first answer on.
    types: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)


@dataclass
class Spoken:
    pcm: bytes
    rate: int
    types: list[str] = field(default_factory=list)


async def read(client: AsyncTcpClient) -> Event:
    event = await client.read_event()
    assert event is not None, "the server closed the connection"
    if Error.is_type(event.type):
        raise WyomingError(Error.from_event(event).text)
    return event


async def transcribe(
    port: int, pcm: bytes, rate: int = 16000, channels: int = 1, language: str | None = "en"
) -> Heard:
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=READ_TIMEOUT_S) as client:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
        step = CHUNK_BYTES * channels * rate // 16000
        for start in range(0, len(pcm), step):
            chunk = AudioChunk(rate=rate, width=2, channels=channels, audio=pcm[start : start + step])
            await client.write_event(chunk.event())
        await client.write_event(AudioStop().event())
        heard = Heard(text="")
        while True:
            event = await read(client)
            heard.types.append(event.type)
            if event.type == "transcript-chunk":
                heard.chunks.append(str(event.data["text"]))
            if Transcript.is_type(event.type):
                heard.text = Transcript.from_event(event).text
            streaming = "transcript-start" in heard.types
            if event.type == "transcript-stop" or (Transcript.is_type(event.type) and not streaming):
                return heard


async def synthesize(port: int, text: str, voice: str | None = None) -> Spoken:
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=READ_TIMEOUT_S) as client:
        choice = SynthesizeVoice(name=voice) if voice else None
        await client.write_event(Synthesize(text=text, voice=choice).event())
        return await read_audio(client)


async def read_audio(client: AsyncTcpClient, until: str = "audio-stop") -> Spoken:
    spoken = Spoken(pcm=b"", rate=0)
    while True:
        event = await read(client)
        spoken.types.append(event.type)
        if AudioStart.is_type(event.type):
            spoken.rate = AudioStart.from_event(event).rate
        elif AudioChunk.is_type(event.type):
            spoken.pcm += AudioChunk.from_event(event).audio
        if event.type == until:
            return spoken
