"""The gateway of the compose stack: Wyoming on 127.0.0.1:10300/10200, the OpenAI API on 127.0.0.1:8000."""

from __future__ import annotations

import openai

from tests.speech import english, wer
from tests.wyoming_client import synthesize, transcribe

STT_PORT = 10300
TTS_PORT = 10200
BASE_URL = "http://127.0.0.1:8000/v1"


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
