"""The stt service of the compose stack, as a program reaches it on 127.0.0.1:50051."""

from __future__ import annotations

import grpc

from harness.speech import corpus_wer, english
from harness.stt_client import stream
from voice.stt.v1 import stt_pb2, stt_pb2_grpc


async def test_a_streamed_recording_comes_back_as_its_words(stack: None) -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:50051") as channel:
        stub = stt_pb2_grpc.SttServiceStub(channel)
        info = await stub.GetInfo(stt_pb2.GetInfoRequest())
        assert info.model == "tiny.en"
        assert info.supports_turn_detection, "the image lacks the Smart Turn model (pipecat-ai)"
        pairs = []
        for rec in english()[:5]:
            outcome = await stream(stub, stt_pb2.RecognitionConfig(sample_rate_hz=16000), [rec.pcm()])
            pairs.append((rec.text, outcome.text))
        assert corpus_wer(pairs) <= 0.15, pairs
