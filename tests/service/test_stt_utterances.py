"""Where utterances begin and end, a replayed burst beside a live stream, and failed decodes.

The real tiny.en model over a real gRPC connection, on the shared recordings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import numpy as np
import pytest

from foundation.audio import pcm16_to_float, silence
from harness.servers import serving, stt_stub
from harness.speech import Recording, corpus_wer, english, wer
from harness.stt_client import requests_for, stream
from services.stt.config import SttSettings
from services.stt.engine import SttEngine, Transcript, create_engine
from services.stt.servicer import SERVICE_NAME, SttServicer
from services.stt.vad import SpeechDetector
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

CONFIG = stt_pb2.RecognitionConfig(sample_rate_hz=16000)
WORDS = stt_pb2.RecognitionConfig(sample_rate_hz=16000, enable_word_time_offsets=True)
MAX_CLIP_WER = 0.3
BLIP_AT_S = 0.5


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[stt_pb2_grpc.SttServiceStub]:
    async with stt_stub(SttSettings(max_stream_s=300)) as stub:
        yield stub


def _blip() -> bytes:
    """80 ms cut from a word: the detector hears one or two voiced windows, then nothing."""
    pcm = english()[0].pcm()
    blip = pcm[2 * 6608 : 2 * (6608 + 1280)]
    padded = silence(BLIP_AT_S) + blip + silence(1.0)
    assert 1 <= sum(SpeechDetector(0.5).push(pcm16_to_float(padded))) <= 2
    return silence(BLIP_AT_S) + blip


def _sentences(recs: list[Recording], gap_s: float = 0.3) -> bytes:
    return b"".join(r.pcm() + silence(gap_s) for r in recs)


async def test_a_blip_before_silence_does_not_start_the_utterance(
    stub: stt_pb2_grpc.SttServiceStub,
) -> None:
    rec = english()[4]
    lead = _blip() + silence(3.0)
    speech_ms = len(lead) / 32
    outcome = await stream(stub, WORDS, [lead + rec.pcm()])
    assert len(outcome.finals) == 1
    final = outcome.finals[0]
    print(f"speech from {speech_ms:.0f} ms; final {final.start_ms}-{final.end_ms} ms: {final.transcript!r}")
    # The decode starts at the speech (less a short pre-roll), not at the blip 3 s before it.
    assert final.start_ms >= speech_ms and final.words[0].start_ms >= speech_ms
    assert wer(rec.text, final.transcript) <= MAX_CLIP_WER
    started = [e for e in outcome.events if e.type == stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED]
    assert len(started) == 1 and started[0].offset_ms >= speech_ms


async def test_a_long_utterance_after_a_blip_is_not_cut_early(stub: stt_pb2_grpc.SttServiceStub) -> None:
    recs = [english()[0], english()[2], english()[3]]  # ~19 s of speech with short pauses
    speech = _sentences(recs)
    # From the blip to the end of speech is past the 28 s cap; the speech alone is well under it.
    lead = _blip() + silence(12.0)
    assert (len(lead) + len(speech)) / 32000 > 29 and len(speech) / 32000 < 25
    outcome = await stream(stub, CONFIG, [lead + speech])
    print([f.transcript for f in outcome.finals])
    assert len(outcome.finals) == 1, "the utterance was cut before its speech ended"
    assert wer(" ".join(r.text for r in recs), outcome.text) <= MAX_CLIP_WER


async def test_a_replayed_burst_does_not_hold_up_another_stream(stub: stt_pb2_grpc.SttServiceStub) -> None:
    # A client back from a reconnect sends ~100 s it buffered, in one message.
    burst = _sentences(english()[:5] * 4, gap_s=0.4)
    assert 90 < len(burst) / 32000 < 125
    live = english()[5]
    replay_finals: list[tuple[float, str]] = []

    async def replay() -> None:
        async for response in stub.StreamingRecognize(requests_for(CONFIG, [burst], chunk_bytes=len(burst))):
            replay_finals.extend((time.perf_counter(), r.transcript) for r in response.results if r.is_final)

    async def speak() -> tuple[float, float, str]:
        await asyncio.sleep(0.3)  # the burst is being worked through
        sent: list[float] = []

        async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
            async for request in requests_for(CONFIG, [live.pcm()], pace_s=0.1, end_of_utterance=False):
                yield request
            sent.append(time.perf_counter())
            yield stt_pb2.StreamingRecognizeRequest(end_of_utterance=stt_pb2.EndOfUtterance())

        async for response in stub.StreamingRecognize(requests()):
            for result in response.results:
                if result.is_final:
                    return sent[0], time.perf_counter(), result.transcript
        raise AssertionError("the live stream got no final")

    started = time.perf_counter()
    (eou_at, final_at, text), _ = await asyncio.gather(speak(), replay())
    last_replay_final = replay_finals[-1][0]
    print(
        f"live final {1000 * (final_at - eou_at):.0f} ms after its end of utterance; "
        f"replay finals at {[round(t - started, 1) for t, _ in replay_finals]} s"
    )
    assert wer(live.text, text) <= MAX_CLIP_WER
    # The live stream is served while the burst is still being worked through, not after it.
    assert final_at < last_replay_final
    # The burst is cut at the utterance cap (28 s), and its words come through.
    assert len(replay_finals) >= 3
    refs = " ".join(r.text for r in english()[:5] * 4)
    assert corpus_wer([(refs, " ".join(t for _, t in replay_finals))]) <= MAX_CLIP_WER


class FailingEngine:
    """The real engine, except that its first ``failures`` decodes raise, and that it finds no
    words while ``wordless`` (as Whisper drops speech it judges silence)."""

    def __init__(self, engine: SttEngine, failures: int) -> None:
        self._engine = engine
        self.failures = failures
        self.wordless = False
        self.info = engine.info

    def load(self) -> None:
        self._engine.load()
        self.info = self._engine.info

    def transcribe(
        self, audio: np.ndarray, language: str | None, word_timestamps: bool, beam_size: int
    ) -> Transcript:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("the model ran out of memory")
        transcript = self._engine.transcribe(audio, language, word_timestamps, beam_size)
        return replace(transcript, text="", words=[]) if self.wordless else transcript


@pytest.fixture(scope="module")
async def failing() -> AsyncIterator[tuple[FailingEngine, stt_pb2_grpc.SttServiceStub]]:
    settings = SttSettings()
    engine = FailingEngine(create_engine(settings), 0)
    servicer = SttServicer(engine, settings)
    add = stt_pb2_grpc.add_SttServiceServicer_to_server
    async with serving(
        settings, servicer, add, stt_pb2_grpc.SttServiceStub, SERVICE_NAME, servicer.load
    ) as stub:
        yield engine, stub


def _decode_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    records = [r for r in caplog.records if r.name == "services.stt.session" and r.levelno >= logging.ERROR]
    return [r for r in records if "the model ran out" in r.message]


async def test_a_failed_decode_is_logged_and_the_final_decoded_afresh(
    failing: tuple[FailingEngine, stt_pb2_grpc.SttServiceStub], caplog: pytest.LogCaptureFixture
) -> None:
    engine, stub = failing
    engine.failures = 1
    rec = english()[1]
    with caplog.at_level(logging.ERROR):
        outcome = await stream(stub, CONFIG, [rec.pcm() + silence(0.5)], pace_s=0.02)
    assert engine.failures == 0
    assert len(_decode_errors(caplog)) == 1
    assert len(outcome.finals) == 1 and wer(rec.text, outcome.text) <= MAX_CLIP_WER


async def test_a_failed_final_is_logged_and_ends_the_stream_internal(
    failing: tuple[FailingEngine, stt_pb2_grpc.SttServiceStub], caplog: pytest.LogCaptureFixture
) -> None:
    engine, stub = failing
    engine.failures = 100
    rec = english()[1]
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as err:
        await stream(stub, CONFIG, [rec.pcm()])
    engine.failures = 0
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "transcribing utterance 0 failed" in (err.value.details() or "")
    assert _decode_errors(caplog), "the failed decode was not logged"


async def test_speech_the_model_finds_no_words_in_is_still_answered(
    failing: tuple[FailingEngine, stt_pb2_grpc.SttServiceStub],
) -> None:
    """The end of utterance gets its final, an empty one over the speech, not silence."""
    engine, stub = failing
    rec = english()[1]
    engine.wordless = True
    try:
        outcome = await stream(stub, CONFIG, [silence(1.0) + rec.pcm()])
    finally:
        engine.wordless = False
    assert [f.transcript for f in outcome.finals] == [""], outcome.finals
    final = outcome.finals[0]
    assert 700 <= final.start_ms < final.end_ms <= 1000 + rec.duration_s * 1000, final
