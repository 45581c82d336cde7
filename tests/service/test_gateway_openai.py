"""The gateway's OpenAI-compatible API in front of real services, called through the official openai SDK."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest

from harness.gateway_stack import NOWHERE, Stack, gateway_settings
from harness.speech import corpus_wer, english, wer
from services.gateway.server import running_gateway
from services.tts.audio import to_wav

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    base_url = f"http://127.0.0.1:{stack.ports.http}/v1"
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        yield client


async def test_transcriptions_match_the_references(client: openai.AsyncOpenAI) -> None:
    pairs = []
    for rec in english():
        result = await client.audio.transcriptions.create(model="whisper-1", file=rec.path)
        pairs.append((rec.text, result.text))
    assert corpus_wer(pairs) <= 0.15, pairs


async def test_verbose_json_has_segments_and_words(client: openai.AsyncOpenAI) -> None:
    rec = english()[0]
    result = await client.audio.transcriptions.create(
        model="whisper-1",
        file=rec.path,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert wer(rec.text, result.text) <= 0.3
    assert result.language == "en" and result.duration == pytest.approx(rec.duration_s, abs=0.05)
    assert result.segments and result.segments[0].text.strip()
    words = result.words or []
    assert len(words) >= len(rec.text.split()) - 2
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in words)
    assert words[-1].end <= rec.duration_s + 0.1


async def test_text_format_is_plain_text(client: openai.AsyncOpenAI) -> None:
    rec = english()[1]
    text = await client.audio.transcriptions.create(model="whisper-1", file=rec.path, response_format="text")
    assert isinstance(text, str) and wer(rec.text, text) <= 0.3


async def test_speech_streams_wav_that_transcribes_back(client: openai.AsyncOpenAI) -> None:
    chunks: list[bytes] = []
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="en_US-joe-medium", input=SENTENCE, response_format="wav"
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        async for chunk in response.iter_bytes():
            chunks.append(chunk)
    data = b"".join(chunks)
    with wave.open(io.BytesIO(data)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    assert rate == 22050 and len(pcm) / 2 / rate > 1.5
    heard = await client.audio.transcriptions.create(model="whisper-1", file=("s.wav", to_wav(pcm, rate)))
    assert wer(SENTENCE, heard.text) <= 0.2, heard.text


async def test_speech_as_pcm_is_24_khz(client: openai.AsyncOpenAI) -> None:
    response = await client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hi.", response_format="pcm"
    )
    pcm = response.content
    assert len(pcm) % 2 == 0 and 0.2 < len(pcm) / 2 / 24000 < 3


async def test_chat_streams_deltas(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="local",
        messages=[
            {"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas, finishes, usage = [], [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            deltas.append(choice.delta.content or "")
            finishes.append(choice.finish_reason)
    assert len([d for d in deltas if d]) > 1 and "".join(deltas).strip()
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    assert usage is not None and usage.completion_tokens > 1


async def test_chat_without_streaming(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model="local",
        messages=[
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Say it again."},
        ],
        max_tokens=16,
        temperature=0,
    )
    assert reply.choices[0].message.content and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.prompt_tokens > 10


async def test_models_lists_the_services_models(client: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in client.models.list()]
    assert "tiny.en" in ids and "en_US-joe-medium" in ids and len(ids) >= 3


async def test_bad_input_is_a_4xx_with_the_reason(stack: Stack, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="`input` is empty"):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="  ")
    with pytest.raises(openai.BadRequestError, match="unknown voice 'nobody'"):
        await client.audio.speech.create(model="tts-1", voice="nobody", input=SENTENCE)
    with pytest.raises(openai.BadRequestError, match="response_format 'mp3'"):
        await client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="mp3")
    with pytest.raises(openai.BadRequestError, match="not a PCM WAV file"):
        await client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"ID3 not a wav"))
    with pytest.raises(openai.BadRequestError, match="last message must be the user's"):
        await client.chat.completions.create(model="local", messages=[{"role": "assistant", "content": "Hi"}])
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports.http}") as http:
        response = await http.post("/v1/audio/transcriptions", data={"model": "whisper-1"})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "file"
        assert "`file` is missing" in response.json()["error"]["message"]


async def test_health_reports_each_service(stack: Stack) -> None:
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports.http}") as http:
        response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"stt": "SERVING", "llm": "SERVING", "tts": "SERVING"}


async def test_a_service_that_is_down_is_a_503() -> None:
    settings = gateway_settings(stt_address=NOWHERE, llm_address=NOWHERE, tts_address=NOWHERE)
    async with (
        running_gateway(settings) as ports,
        openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{ports.http}/v1", api_key="unused", max_retries=0
        ) as client,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="local", messages=[{"role": "user", "content": "Hi"}])
        assert caught.value.status_code == 503
        assert caught.value.body is not None
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{ports.http}") as http:
            assert (await http.get("/health")).status_code == 503
