"""The gateway of the compose stack: Wyoming on 127.0.0.1:10300/10200, the OpenAI API on 127.0.0.1:8000."""

from __future__ import annotations

import asyncio
import base64

import httpx2
import openai

from harness.speech import at_rate, english, wer
from harness.wyoming_client import synthesize, transcribe

STT_PORT = 10300
TTS_PORT = 10200
BASE_URL = "http://127.0.0.1:8000/v1"
WS_URL = "ws://127.0.0.1:8000/v1"


async def test_wyoming_transcribes_and_speaks(stack: None) -> None:
    rec = english()[0]
    heard = await transcribe(STT_PORT, rec.pcm())
    assert wer(rec.text, heard.text) <= 0.3, heard.text
    spoken = await synthesize(TTS_PORT, "Hello from the gateway.")
    assert spoken.rate == 22050 and len(spoken.pcm) / 2 / spoken.rate > 0.5


async def test_openai_chat_streams_a_reply(stack: None) -> None:
    async with openai.AsyncOpenAI(base_url=BASE_URL, api_key="unused", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=24,
            stream=True,
        )
        deltas = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(deltas).strip()
        with open(english()[1].path, "rb") as audio:
            result = await client.audio.transcriptions.create(model="whisper-1", file=audio)
        assert wer(english()[1].text, result.text) <= 0.3


async def test_the_realtime_api_converses_through_the_composed_gateway(stack: None) -> None:
    """The gateway container runs the conversation core: a spoken turn and a typed one."""
    rec = english()[0]
    audio = at_rate(rec.pcm(), 24_000) + bytes(24_000 * 2 * 2)
    async with (
        openai.AsyncOpenAI(base_url=BASE_URL, websocket_base_url=WS_URL, api_key="unused") as client,
        client.realtime.connect(model="voice-agent") as conn,
    ):
        chunk = 24_000 // 10 * 2
        for at in range(0, len(audio), chunk):
            await conn.input_audio_buffer.append(audio=base64.b64encode(audio[at : at + chunk]).decode())
            await asyncio.sleep(0.1)
        kinds: list[str] = []
        transcript = ""
        async with asyncio.timeout(60):
            async for event in conn:
                kinds.append(event.type)
                if event.type == "conversation.item.input_audio_transcription.completed":
                    transcript = event.transcript
                if event.type == "response.done":
                    assert event.response.status == "completed", event
                    break
        assert wer(rec.text, transcript) <= 0.3, transcript
        assert "response.output_audio.delta" in kinds, kinds
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}
        await conn.conversation.item.create(item=item)  # type: ignore[arg-type]
        await conn.response.create()
        async with asyncio.timeout(60):
            async for event in conn:
                if event.type == "response.done":
                    assert event.response.status == "completed", event
                    break


async def test_the_page_is_served(stack: None) -> None:
    async with httpx2.AsyncClient() as http:
        page = await http.get("http://127.0.0.1:8000/")
    assert page.status_code == 200 and "/v1/realtime" in page.text
