"""The ``realtime`` and ``browser`` rows: the same clips through the gateway's conversation core.

``realtime``: an OpenAI Realtime client streams the clip (PCM16 at 24 kHz, 40 ms a message,
in real time) to ``/v1/realtime``; the reply counts as played from its first delta's arrival
plus the page's 80 ms jitter buffer. ``browser``: the page at ``/`` in headless Chromium, the
clip as its fake microphone; latency as the page measures it (from the last loud microphone
audio to the first reply sample scheduled).
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import websockets

from bench.e2e.outcome import Outcome
from bench.e2e.paused import Clip
from harness.browser import microphone, talk
from harness.edge import loud_windows_ms
from harness.speech import at_rate

GATEWAY = "127.0.0.1:8000"
RATE_HZ = 24_000
CHUNK_MS = 40
JITTER_MS = 80  # the page's jitter buffer (services/gateway/page/index.html)


async def _realtime(clip: Clip, end_ms: float, lead_s: float, tail_s: float, speech_dbfs: float) -> Outcome:
    audio = (
        bytes(round(lead_s * RATE_HZ) * 2) + at_rate(clip.pcm, RATE_HZ) + bytes(round(tail_s * RATE_HZ) * 2)
    )
    outcome = Outcome(clip.id, clip.text)
    said: list[str] = []
    replies: dict[str, list[tuple[float, bytes]]] = {}  # by response: (arrival ms, audio)
    async with websockets.connect(f"ws://{GATEWAY}/v1/realtime") as ws:
        start = time.monotonic()

        async def send() -> None:
            chunk = RATE_HZ * CHUNK_MS // 1000 * 2
            for n, at in enumerate(range(0, len(audio), chunk)):
                message = {
                    "type": "input_audio_buffer.append",
                    "audio": base64.b64encode(audio[at : at + chunk]).decode(),
                }
                await ws.send(json.dumps(message))
                await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_MS / 1000 - time.monotonic()))

        sending = asyncio.create_task(send())
        done = 0
        try:
            async with asyncio.timeout(60 + len(audio) / 2 / RATE_HZ):
                while not (sending.done() and done >= len(said) > 0):
                    event = json.loads(await ws.recv())
                    now = (time.monotonic() - start) * 1000
                    if event["type"] == "conversation.item.input_audio_transcription.completed":
                        said.append(event["transcript"])
                    elif event["type"] == "response.output_audio.delta":
                        replies.setdefault(event["response_id"], []).append(
                            (now, base64.b64decode(event["delta"]))
                        )
                    elif event["type"] == "response.done":
                        done += 1
        except TimeoutError:
            outcome.error = "no reply in time"
        sending.cancel()
    outcome.heard, outcome.turns = " ".join(said), len(said)
    if not replies:
        outcome.error = outcome.error or "no reply"
        return outcome
    firsts = sorted(chunks[0][0] for chunks in replies.values())
    outcome.cut_off = len(said) > 1 or firsts[0] + JITTER_MS < end_ms
    last = max(replies.values(), key=lambda chunks: chunks[0][0])
    reply = np.frombuffer(b"".join(c for _, c in last), dtype="<i2").astype(np.float32) / 32768
    loud = loud_windows_ms(reply, RATE_HZ, speech_dbfs)
    if last[0][0] + JITTER_MS < end_ms or not loud.size:
        outcome.error = "no reply after the end of speech"
        return outcome
    outcome.latency_ms = last[0][0] + JITTER_MS + float(loud[0]) - end_ms
    return outcome


def realtime(clip: Clip, end_ms: float, lead_s: float, tail_s: float, speech_dbfs: float) -> Outcome:
    """``clip`` after ``lead_s`` of silence, speech ending at ``end_ms``; the reply's first window
    louder than ``speech_dbfs`` is where it is heard."""
    return asyncio.run(_realtime(clip, end_ms, lead_s, tail_s, speech_dbfs))


def browser(clip: Clip, lead_s: float, tail_s: float) -> Outcome:
    outcome = Outcome(clip.id, clip.text)
    with tempfile.TemporaryDirectory() as tmp:
        mic = Path(tmp) / "microphone.wav"
        # The page connects after the microphone opens: a second more before the speech.
        microphone(mic, [lead_s + 1.0, clip.pcm, tail_s + 3.0])
        record = talk(f"http://{GATEWAY}/", mic, 1, 60 + len(clip.pcm) / 32_000)
    outcome.heard, outcome.turns = " ".join(record["you"]), len(record["you"])
    outcome.cut_off = len(record["you"]) > 1
    if not record["turns"]:
        outcome.error = "no reply"
        return outcome
    outcome.latency_ms = float(record["turns"][-1]["latency_ms"])
    return outcome
