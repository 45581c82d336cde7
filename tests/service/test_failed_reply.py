"""A reply the chat service fails before its first word is no silence: the user hears a short
apology, the model's history holds no word of it, and the conversation goes on.

The chat service is the real one with its openai engine, through a real HTTP proxy that fails
the first requests, in front of ``llama_cpp.server`` on the embedded model (the parts of
test_llm_cloud.py); speech synthesis is the real service. What is checked is the services'
account (harness/tap.py): the text and audio the speech service delivered for each turn, and
the recording of what was played.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets

from conversation.fillers import APOLOGY
from edge_client.config import EdgeSettings
from harness.edge import converse, played_in_order
from harness.gateway_stack import NOWHERE, gateway_settings
from harness.servers import running_server
from harness.speech import normalize
from harness.tap import tapped
from services.gateway.realtime import API_RATE_HZ
from services.gateway.server import running_gateway
from services.llm.engine import create_engine
from services.llm.engines.local import embedded_model_path
from services.llm.servicer import SERVICE_NAME as LLM_SERVICE
from services.llm.servicer import LlmServicer
from services.tts.config import TtsSettings
from services.tts.servicer import SERVICE_NAME as TTS_SERVICE
from services.tts.servicer import TtsServicer
from tests.service.test_conversation_tools import typed
from tests.service.test_llm_cloud import FlakyProxy, running_model_server, settings_for
from voice.llm.v1 import llm_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlakyProxy]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with running_model_server(embedded_model_path(), log) as url:
        flaky = FlakyProxy(url)
        yield flaky
        flaky.close()


FIRST, SECOND = "Hello there!", "What is the capital of France?"


@asynccontextmanager
async def failing_first(tts: TtsServicer, proxy: FlakyProxy) -> AsyncIterator[tuple[str, str]]:
    """The chat service (openai engine, through ``proxy``) whose next reply fails every attempt,
    and the speech service: their addresses."""
    settings = settings_for("openai", proxy.url)
    chat = LlmServicer(create_engine(settings), settings)
    add_chat = lambda s: llm_pb2_grpc.add_LlmServiceServicer_to_server(chat, s)  # noqa: E731
    add_tts = lambda s: tts_pb2_grpc.add_TtsServiceServicer_to_server(tts, s)  # noqa: E731
    proxy.fail(settings.retries + 1, 500)
    async with (
        running_server(settings, add_chat, [LLM_SERVICE]) as llm_server,
        running_server(TtsSettings(metrics_port=0), add_tts, [TTS_SERVICE]) as tts_server,
    ):
        yield f"127.0.0.1:{llm_server.port}", f"127.0.0.1:{tts_server.port}"


async def test_a_reply_failed_before_its_first_word_is_an_apology_and_the_talk_goes_on(
    tmp_path: Path, tts: TtsServicer, proxy: FlakyProxy
) -> None:
    async with failing_first(tts, proxy) as (llm, speech):
        base = EdgeSettings(stt=NOWHERE, llm=llm, tts=speech, max_tokens=16)
        async with tapped(base) as (tapped_settings, taps):
            _, session = await converse(tapped_settings, tmp_path, typed(FIRST, SECOND), timeout_s=90)
    assert len(session.turns) == 2, session.stderr
    failed, answered = session.turns
    failed_id, answered_id = taps.llm.turn_id(FIRST), taps.llm.turn_id(SECOND)
    # The first reply failed at the chat service, and the report says so and what was said instead.
    assert not taps.llm.reply(failed_id)
    assert "the chat service failed: openai is unavailable" in str(failed["error"]), failed
    assert failed["agent_text"] == "" and failed["apology"] == APOLOGY, failed
    assert f"ai: {APOLOGY} [the chat service failed" in session.stderr, session.stderr
    # The speech service said the apology, and all of it was played.
    assert " ".join(piece.text.strip() for piece in taps.tts.pieces(failed_id)) == APOLOGY
    apology = taps.tts.audio(failed_id)
    assert len(apology) / session.output_rate_hz > 1.0, len(apology)
    at = played_in_order(session.samples, apology)[-1].until
    # The next turn is the model's answer, played after it; the model never saw the apology.
    assert "error" not in answered and "apology" not in answered, answered
    spoken = " ".join(piece.text for piece in taps.tts.pieces(answered_id))
    assert taps.llm.reply(answered_id) and normalize(spoken) == normalize(str(answered["agent_text"]))
    played_in_order(session.samples, taps.tts.audio(answered_id), start=at)
    history = taps.llm.history()
    assert [m.content for m in history][-2:] == [SECOND, taps.llm.reply(answered_id)], history
    assert not [m for m in history if APOLOGY in m.content], history


async def test_the_realtime_door_says_and_shows_the_apology(tts: TtsServicer, proxy: FlakyProxy) -> None:
    """A Realtime client (the page among them): the failed response carries the apology's audio
    and, as its transcript, its words; the next response is the model's."""
    async with (
        failing_first(tts, proxy) as (llm, speech),
        running_gateway(gateway_settings(NOWHERE, llm, speech)) as ports,
        websockets.connect(f"ws://127.0.0.1:{ports.http}/v1/realtime") as ws,
    ):
        responses = [await _typed(ws, FIRST), await _typed(ws, SECOND)]
    (failed, failed_audio_s), (answered, answered_audio_s) = responses
    assert failed["status"] == "failed", failed
    assert "openai is unavailable" in failed["status_details"]["error"]["message"], failed
    assert _transcript(failed) == APOLOGY and failed_audio_s > 1.0, (failed, failed_audio_s)
    assert answered["status"] == "completed" and _transcript(answered) not in ("", APOLOGY), answered
    assert answered_audio_s > 0.2, answered


async def _typed(ws: Any, text: str) -> tuple[dict[str, Any], float]:
    """Ask ``text`` as a typed item; the response's ``response.done`` body and its seconds of audio."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    await ws.send(json.dumps({"type": "response.create"}))
    audio = 0
    async with asyncio.timeout(90):
        async for message in ws:
            event = json.loads(message)
            if event["type"] == "response.output_audio.delta":
                audio += len(base64.b64decode(event["delta"])) // 2
            elif event["type"] == "response.done":
                return event["response"], audio / API_RATE_HZ
    raise AssertionError("the socket closed before the response was done")


def _transcript(response: dict[str, Any]) -> str:
    return " ".join(
        part.get("transcript", "")
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    ).strip()
