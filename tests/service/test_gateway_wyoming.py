"""The gateway's Wyoming ports before real STT and TTS services, spoken to by the wyoming library."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from harness.gateway_stack import NOWHERE, Stack, gateway_settings, gateway_stack
from harness.speech import corpus_wer, english, wer
from harness.stt_client import stream
from harness.wyoming_client import READ_TIMEOUT_S, WyomingError, read, read_audio, synthesize, transcribe
from services.gateway.server import running_gateway
from voice.stt.v1 import stt_pb2

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with gateway_stack(llm=False) as stack:
        yield stack


async def describe(port: int) -> Info:
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=READ_TIMEOUT_S) as client:
        await client.write_event(Describe().event())
        return Info.from_event(await read(client))


async def test_describe_lists_the_stt_model_and_the_tts_voices(stack: Stack) -> None:
    asr = (await describe(stack.ports.wyoming_stt)).asr
    assert [m.name for m in asr[0].models] == ["tiny.en"]
    assert asr[0].models[0].languages == ["en"] and asr[0].supports_transcript_streaming
    tts = (await describe(stack.ports.wyoming_tts)).tts
    assert "en_US-joe-medium" in [v.name for v in tts[0].voices]
    assert tts[0].supports_synthesize_streaming


async def test_transcripts_match_the_grpc_path(stack: Stack) -> None:
    wyoming, grpc_path = [], []
    for rec in english():
        heard = await transcribe(stack.ports.wyoming_stt, rec.pcm())
        direct = await stream(stack.stt, stt_pb2.RecognitionConfig(sample_rate_hz=16000), [rec.pcm()])
        wyoming.append((rec.text, heard.text))
        grpc_path.append((rec.text, direct.text))
        # Streaming order: transcript-start, chunks, the transcript, transcript-stop.
        assert heard.types[0] == "transcript-start" and heard.types[-2:] == ["transcript", "transcript-stop"]
        assert "".join(heard.chunks) == heard.text, heard
    print(f"corpus WER: wyoming {corpus_wer(wyoming):.3f}, grpc {corpus_wer(grpc_path):.3f}")
    assert corpus_wer(wyoming) <= corpus_wer(grpc_path) + 0.05
    assert corpus_wer(wyoming) <= 0.15


async def test_stereo_audio_at_another_rate_is_converted(stack: Stack) -> None:
    rec = english()[0]
    mono = np.frombuffer(rec.pcm(), dtype="<i2")
    # 16 kHz -> 32 kHz by repeating samples, then two equal channels.
    stereo = np.repeat(np.repeat(mono, 2), 2).astype("<i2").tobytes()
    heard = await transcribe(stack.ports.wyoming_stt, stereo, rate=32000, channels=2)
    assert wer(rec.text, heard.text) <= 0.3, heard.text


async def test_audio_stop_without_audio_gives_an_empty_transcript(stack: Stack) -> None:
    heard = await transcribe(stack.ports.wyoming_stt, b"")
    assert heard.text == ""


async def test_synthesized_speech_transcribes_back(stack: Stack) -> None:
    spoken = await synthesize(stack.ports.wyoming_tts, SENTENCE)
    assert spoken.types[0] == "audio-start" and spoken.types[-1] == "audio-stop"
    assert spoken.rate == 22050 and len(spoken.pcm) / 2 / spoken.rate > 1.5
    heard = await transcribe(stack.ports.wyoming_stt, spoken.pcm, rate=spoken.rate)
    assert wer(SENTENCE, heard.text) <= 0.2, heard.text


async def test_streamed_text_gives_audio_before_the_text_ends(stack: Stack) -> None:
    first = "Hello there, this is the first sentence of a longer reply. "
    rest = ["And here ", "comes the ", "second one, ", "which ends now."]
    async with AsyncTcpClient("127.0.0.1", stack.ports.wyoming_tts, read_timeout=READ_TIMEOUT_S) as client:
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text=first).event())
        # The stream is still open: audio for the first sentence must come anyway.
        start = await read(client)
        chunk = await read(client)
        assert start.type == "audio-start" and AudioChunk.is_type(chunk.type)
        for text in rest:
            await client.write_event(SynthesizeChunk(text=text).event())
        await client.write_event(Synthesize(text=first + "".join(rest)).event())
        await client.write_event(SynthesizeStop().event())
        spoken = await read_audio(client, until="synthesize-stopped")
    assert spoken.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert "audio-start" not in spoken.types
    pcm = AudioChunk.from_event(chunk).audio + spoken.pcm
    heard = await transcribe(stack.ports.wyoming_stt, pcm, rate=22050)
    assert wer(first + "".join(rest), heard.text) <= 0.25, heard.text


async def test_an_unknown_voice_is_an_error_event_with_the_reason(stack: Stack) -> None:
    with pytest.raises(WyomingError, match="unknown voice 'nobody'"):
        await synthesize(stack.ports.wyoming_tts, SENTENCE, voice="nobody")
    # Streamed: one error answers the stream; its chunks and its repeated `synthesize` say nothing more.
    async with AsyncTcpClient("127.0.0.1", stack.ports.wyoming_tts, read_timeout=READ_TIMEOUT_S) as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="nobody")).event())
        for text in ("Hello ", "there. ", "And again."):
            await client.write_event(SynthesizeChunk(text=text).event())
        await client.write_event(Synthesize(text="Hello there. And again.").event())
        await client.write_event(SynthesizeStop().event())
        assert await answers(client) == ["error"]
    assert (await synthesize(stack.ports.wyoming_tts, "Fine.")).pcm


async def answers(client: AsyncTcpClient, quiet_s: float = 1.0) -> list[str]:
    """The types of the events that come until the server has been quiet for ``quiet_s``."""
    types: list[str] = []
    while True:
        try:
            event = await asyncio.wait_for(client.read_event(), quiet_s)
        except TimeoutError:
            return types
        assert event is not None
        types.append(event.type)


async def test_a_voice_can_be_chosen_by_language(stack: Stack) -> None:
    async with AsyncTcpClient("127.0.0.1", stack.ports.wyoming_tts, read_timeout=READ_TIMEOUT_S) as client:
        await client.write_event(Synthesize(text="Hi.", voice=SynthesizeVoice(language="en")).event())
        assert (await read_audio(client)).rate == 22050
        await client.write_event(Synthesize(text="Hi.", voice=SynthesizeVoice(language="xx")).event())
        with pytest.raises(WyomingError, match="no voice speaks 'xx'; the voices speak: en-US"):
            await read(client)


async def test_a_service_that_is_down_is_one_error_event() -> None:
    settings = gateway_settings(stt_address=NOWHERE, llm_address=NOWHERE, tts_address=NOWHERE)
    async with (
        running_gateway(settings) as ports,
        AsyncTcpClient("127.0.0.1", ports.wyoming_stt, read_timeout=READ_TIMEOUT_S) as client,
    ):
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for _ in range(10):
            await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=bytes(3200)).event())
        await client.write_event(AudioStop().event())
        event = await read_event(client)
        assert Error.is_type(event.type) and Error.from_event(event).code == "UNAVAILABLE"
        assert await answers(client) == []
        with pytest.raises(WyomingError):
            await asyncio.wait_for(describe(ports.wyoming_tts), 30)


async def read_event(client: AsyncTcpClient) -> Event:
    event = await asyncio.wait_for(client.read_event(), 30)
    assert event is not None
    return event
