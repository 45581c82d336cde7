"""Two replicas of each service behind nginx: streams spread over the replicas.

The stack that ran before (one replica each) is put back afterwards, or taken down.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest

from harness.speech import english
from harness.stt_client import stream
from tests.containers.conftest import WAIT_S, compose
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

REPLICAS = ("-f", "docker-compose.yml", "-f", "docker-compose.replicas.yml")


@pytest.fixture(scope="module")
def replicas() -> Iterator[None]:
    was_running = bool(compose("ps", "-q").stdout.strip())
    try:
        compose(*REPLICAS, "up", "-d", "--wait", "--wait-timeout", str(WAIT_S))
        yield
    finally:
        compose(*REPLICAS, "down", "--timeout", "10")
        if was_running:
            compose("up", "-d", "--wait", "--wait-timeout", str(WAIT_S))


def _streams_served(index: int) -> float:
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9101/metrics').read().decode())"
    metrics = compose(*REPLICAS, "exec", "-T", "--index", str(index), "stt", "python", "-c", script).stdout
    pattern = r'voice_rpcs_total\{(?=[^}]*method="/voice.stt.v1.SttService/StreamingRecognize")[^}]*\} (\S+)'
    return sum(float(value) for value in re.findall(pattern, metrics))


async def test_streams_through_the_proxy_reach_both_replicas(replicas: None) -> None:
    before = [_streams_served(i) for i in (1, 2)]
    async with grpc.aio.insecure_channel("127.0.0.1:50051") as channel:
        stub = stt_pb2_grpc.SttServiceStub(channel)
        config = stt_pb2.RecognitionConfig(sample_rate_hz=16000)
        for _ in range(4):
            assert (await stream(stub, config, [english()[5].pcm()])).finals
    served = [_streams_served(i) - b for i, b in zip((1, 2), before, strict=True)]
    assert sum(served) == 4
    assert min(served) >= 1, f"one replica served every stream: {served}"
