"""Short, shouted and acted words through the STT service (real tiny.en, real gRPC): heard even
where its voice detector scores them low; coughs, noise and silence still give no words."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import openai
import pytest

from conversation.backchannel import DEFAULT_BACKCHANNELS, Backchannels
from foundation.audio import silence
from harness.gateway_stack import Stack
from harness.servers import stt_stub
from harness.speech import normalize, shouts
from harness.stt_client import stream
from services.stt.config import SttSettings
from tests.noise import SOUNDS, recorded
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

CONFIG = stt_pb2.RecognitionConfig(sample_rate_hz=16000, interim_results=True)
COUGHS = ("cough-default", "cough-hillbilly", "cough-default-es", "cough-default-ru")


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[stt_pb2_grpc.SttServiceStub]:
    async with stt_stub(SttSettings(max_stream_s=30)) as stub:
        yield stub


def _as_said(pcm: bytes) -> list[bytes]:
    """As a client sends it: quiet before, its endpointer's silence after, then the end of utterance."""
    return [silence(0.3) + pcm + silence(0.6)]


async def test_shouted_and_acted_words_are_heard(stub: stt_pb2_grpc.SttServiceStub) -> None:
    """ "No!", "Hello?", "Wait, what?"...: each is one final with its words (Whisper now and then
    says a lone word twice: "No... No..."), in 9 clips of 10 at least."""
    heard = []
    for rec in shouts("interruption"):
        outcome = await stream(stub, CONFIG, _as_said(rec.pcm()))
        assert len(outcome.finals) == 1, (rec.id, outcome.finals)
        said = normalize(outcome.text).split()
        heard.append(bool(said) and set(said) == set(normalize(rec.text).split()))
        print(f"{rec.id}: {outcome.text!r} {'right' if heard[-1] else 'WRONG'}")
    assert sum(heard) >= 0.9 * len(heard), f"{sum(heard)} of {len(heard)} heard"


async def test_a_shout_after_a_long_quiet_is_heard_with_its_time(stub: stt_pb2_grpc.SttServiceStub) -> None:
    """20 s of quiet, then "No!": heard from the last seconds kept, timed in the stream."""
    rec = next(r for r in shouts("interruption") if r.id == "default_nooo")
    outcome = await stream(stub, CONFIG, [silence(20.0) + rec.pcm() + silence(0.6)])
    assert [normalize(f.transcript) for f in outcome.finals] == ["no"], outcome.finals
    assert 19_700 <= outcome.finals[0].start_ms <= 20_500, outcome.finals


async def test_an_acted_hello_the_model_is_unsure_of_is_kept(stub: stt_pb2_grpc.SttServiceStub) -> None:
    """After 5 s of quiet and with 1 s of silence after it, the "Hello?" Silero misses scores -1.32
    on the model's evidence (as over a playing reply, -1.35): words all the same, not a cough."""
    rec = next(r for r in shouts("interruption") if r.id == "classic_hello")
    outcome = await stream(stub, CONFIG, [silence(5.0) + rec.pcm() + silence(1.0)])
    assert [normalize(f.transcript) for f in outcome.finals] == ["hello"], outcome.finals


async def test_a_word_the_detector_takes_for_speech_only_at_its_end_is_heard_whole(
    stub: stt_pb2_grpc.SttServiceStub,
) -> None:
    """After 5 s of quiet, Silero takes "Yes, sir!" (0.58 s) for speech only 0.5 s in: decoded
    from there it came back "Stop!" (which would stop a reply), "Awesome!" after 7.13 s of quiet."""
    rec = next(r for r in shouts("backchannel") if r.id == "default_yessir")
    for quiet_s in (5.0, 7.13):
        outcome = await stream(stub, CONFIG, [silence(quiet_s) + rec.pcm() + silence(0.6)])
        assert [normalize(f.transcript) for f in outcome.finals] == ["yes sir"], (quiet_s, outcome.finals)
        assert quiet_s - 0.1 <= outcome.finals[0].start_ms / 1000 <= quiet_s + 0.3, outcome.finals


async def test_recognize_hears_a_shout_and_no_words_in_a_cough(stub: stt_pb2_grpc.SttServiceStub) -> None:
    """The unary Recognize takes its audio's end for an end of utterance, as a stream's client says it."""
    config = stt_pb2.RecognitionConfig(sample_rate_hz=16000)
    for rec in shouts("interruption"):
        if rec.id in ("default_nooo", "surfer_whatthe"):  # Silero scores them 0.11 and 0.47
            reply = await stub.Recognize(stt_pb2.RecognizeRequest(config=config, audio_content=rec.pcm()))
            said = [normalize(r.transcript) for r in reply.results]
            assert said == [normalize(rec.text)] and reply.results[0].is_final, (rec.id, reply)
    cough = recorded("cough-default")
    reply = await stub.Recognize(stt_pb2.RecognizeRequest(config=config, audio_content=cough))
    assert list(reply.results) == [], reply


async def test_short_acknowledgements_are_heard_as_backchannels(stub: stt_pb2_grpc.SttServiceStub) -> None:
    """ "Yes, sir!", "Hmm", "Mm": words the backchannel list knows, not an empty final."""
    known = Backchannels(DEFAULT_BACKCHANNELS)
    said = [(await stream(stub, CONFIG, _as_said(rec.pcm()))).text for rec in shouts("backchannel")]
    assert sum(text in known for text in said) >= 3, said


@pytest.mark.parametrize(
    "audio",
    [
        *(recorded(name) + silence(0.6) for name in COUGHS),
        silence(3.0),
        (np.random.default_rng(1).normal(0, 0.05 * 32767, 48000)).astype("<i2").tobytes(),
        (np.random.default_rng(2).normal(0, 0.2 * 32767, 16000)).clip(-32767, 32767).astype("<i2").tobytes(),
    ],
    ids=[*COUGHS, "silence", "white-noise", "loud-white-noise"],
)
async def test_coughs_and_noise_give_an_empty_final(stub: stt_pb2_grpc.SttServiceStub, audio: bytes) -> None:
    """Decoded now (the client's end of utterance says it heard voice), they still make no words:
    the model's own evidence (no-speech probability, token log-probability) turns its guesses
    ("Cup!", "Ow! Ow!", "I don't know.") down, and laughter ("Ha ha ha ha ha!") is no words."""
    outcome = await stream(stub, CONFIG, [audio])
    assert [f.transcript for f in outcome.finals] == [""] and outcome.interims == [], outcome.finals


async def test_the_openai_door_hears_them_too(stack: Stack) -> None:
    """The gateway's /v1/audio/transcriptions, one clip a request with nothing else in the audio."""
    base_url = f"http://127.0.0.1:{stack.ports.http}/v1"
    heard = []
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        for rec in shouts("interruption"):
            text = (await client.audio.transcriptions.create(model="whisper-1", file=rec.path)).text
            heard.append(set(normalize(text).split()) == set(normalize(rec.text).split()))
        cough = await client.audio.transcriptions.create(model="whisper-1", file=SOUNDS / "cough-default.wav")
    assert sum(heard) >= 0.9 * len(heard), heard
    assert cough.text == ""
