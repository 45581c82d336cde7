"""A reply the chat service fails before its first word is no silence: the user hears a short
apology, the model's history holds no word of it, and the conversation goes on.

The chat service is the real one with its openai engine, through a real HTTP proxy that fails
the first requests, in front of ``llama_cpp.server`` on the embedded model (the parts of
test_llm_cloud.py); speech synthesis is the real service. What is checked is the services'
account (harness/tap.py): the text and audio the speech service delivered for each turn, and
the recording of what was played.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conversation.fillers import APOLOGY
from edge_client.config import EdgeSettings
from harness.edge import converse, played_in_order
from harness.gateway_stack import NOWHERE
from harness.servers import running_server
from harness.speech import normalize
from harness.tap import tapped
from services.llm.engine import create_engine
from services.llm.engines.local import embedded_model_path
from services.llm.servicer import SERVICE_NAME as LLM_SERVICE
from services.llm.servicer import LlmServicer
from services.tts.config import TtsSettings
from services.tts.servicer import SERVICE_NAME as TTS_SERVICE
from services.tts.servicer import TtsServicer
from tests.service.test_conversation_tools import tts, typed
from tests.service.test_llm_cloud import FlakyProxy, running_model_server, settings_for
from voice.llm.v1 import llm_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

pytestmark = pytest.mark.service
__all__ = ["tts"]  # the real speech service, a fixture


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlakyProxy]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with running_model_server(embedded_model_path(), log) as url:
        flaky = FlakyProxy(url)
        yield flaky
        flaky.close()


async def test_a_reply_failed_before_its_first_word_is_an_apology_and_the_talk_goes_on(
    tmp_path: Path, tts: TtsServicer, proxy: FlakyProxy
) -> None:
    first, second = "Hello there!", "What is the capital of France?"
    settings = settings_for("openai", proxy.url)
    chat = LlmServicer(create_engine(settings), settings)
    add_chat = lambda s: llm_pb2_grpc.add_LlmServiceServicer_to_server(chat, s)  # noqa: E731
    add_tts = lambda s: tts_pb2_grpc.add_TtsServiceServicer_to_server(tts, s)  # noqa: E731
    proxy.fail(settings.retries + 1, 500)  # every attempt at the first reply
    async with (
        running_server(settings, add_chat, [LLM_SERVICE]) as llm_server,
        running_server(TtsSettings(metrics_port=0), add_tts, [TTS_SERVICE]) as tts_server,
    ):
        base = EdgeSettings(
            stt=NOWHERE, llm=f"127.0.0.1:{llm_server.port}", tts=f"127.0.0.1:{tts_server.port}", max_tokens=16
        )
        async with tapped(base) as (tapped_settings, taps):
            _, session = await converse(tapped_settings, tmp_path, typed(first, second), timeout_s=90)
    assert len(session.turns) == 2, session.stderr
    failed, answered = session.turns
    failed_id, answered_id = taps.llm.turn_id(first), taps.llm.turn_id(second)
    # The first reply failed at the chat service, and the report says so and what was said instead.
    assert not taps.llm.reply(failed_id) and proxy.requests >= settings.retries + 1
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
    assert [m.content for m in history][-2:] == [second, taps.llm.reply(answered_id)], history
    assert not [m for m in history if APOLOGY in m.content], history
