"""build_server and serve: health, readiness, limits, reflection, metrics, graceful stop.

The plumbing is tested with the STT servicer over a fake engine (a fixed
transcript after a short wait); the real model is in test_stt_service.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from harness.speech import REPO, english
from harness.stt_client import requests_for, stream
from services.common.server import build_server
from services.stt.config import SttSettings
from services.stt.engine import EngineInfo, Transcript
from services.stt.servicer import SERVICE_NAME, SttServicer
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

CONFIG = stt_pb2.RecognitionConfig(sample_rate_hz=16000)


class FakeEngine:
    info = EngineInfo("fake", ["en"], False, "cpu", "int8")

    def load(self) -> None:
        pass

    def transcribe(
        self, audio: np.ndarray, language: str | None, word_timestamps: bool, beam_size: int
    ) -> Transcript:
        time.sleep(0.2)
        return Transcript("hello", "en", 0.0, len(audio) / 16000)


def _settings(**overrides: object) -> SttSettings:
    return SttSettings(host="127.0.0.1", port=0, metrics_port=0, **overrides)  # type: ignore[arg-type]


async def _server(settings: SttSettings):  # type: ignore[no-untyped-def]
    servicer = SttServicer(FakeEngine(), settings)
    return await build_server(
        settings, lambda s: stt_pb2_grpc.add_SttServiceServicer_to_server(servicer, s), [SERVICE_NAME]
    )


async def _health(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def test_not_serving_until_ready() -> None:
    server = await _server(_settings())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stt_pb2_grpc.SttServiceStub(channel).GetInfo(stt_pb2.GetInfoRequest())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "loading" in (err.value.details() or "")
        await server.set_ready()
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await _health(channel, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        assert (await stt_pb2_grpc.SttServiceStub(channel).GetInfo(stt_pb2.GetInfoRequest())).model == "fake"
    await server.stop(0)


async def test_streams_beyond_the_limit_are_resource_exhausted() -> None:
    server = await _server(_settings(max_streams=1))
    await server.set_ready()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = stt_pb2_grpc.SttServiceStub(channel)
        first = asyncio.create_task(stream(stub, CONFIG, [english()[5].pcm()], pace_s=0.05))
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream(stub, CONFIG, [b"\0\0"])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams" in (err.value.details() or "")
        # Unary calls and the first stream go on.
        assert (await stub.GetInfo(stt_pb2.GetInfoRequest())).model == "fake"
        assert (await first).text == "hello"
        assert (await stream(stub, CONFIG, [english()[5].pcm()])).text == "hello"
    await server.stop(0)


async def test_reflection_lists_the_services() -> None:
    server = await _server(_settings())
    await server.set_ready()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        services = await asyncio.to_thread(ProtoReflectionDescriptorDatabase(channel).get_services)
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= set(services)
    await server.stop(0)


async def test_stop_lets_in_flight_streams_finish_and_refuses_new_ones() -> None:
    server = await _server(_settings())
    await server.set_ready()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = stt_pb2_grpc.SttServiceStub(channel)
        in_flight = asyncio.create_task(stream(stub, CONFIG, [english()[5].pcm()], pace_s=0.02))
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(server.stop(5))
        await asyncio.sleep(0.05)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetInfo(stt_pb2.GetInfoRequest())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (await in_flight).text == "hello"
        await stopping


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_service_process_serves_metrics_and_stops_cleanly_on_sigterm() -> None:
    port, metrics_port = _free_port(), _free_port()
    env = {**os.environ, "STT_PORT": str(port), "STT_METRICS_PORT": str(metrics_port)}
    proc = subprocess.Popen([sys.executable, "-m", "services.stt"], cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(300):
                try:
                    if await _health(channel) == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
            stub = stt_pb2_grpc.SttServiceStub(channel)
            assert (await stream(stub, CONFIG, [english()[5].pcm()])).finals
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as reply:
                metrics = reply.read().decode()
            assert 'voice_stage_latency_seconds_count{service="stt",stage="decode"}' in metrics
            call = stub.StreamingRecognize(requests_for(CONFIG, [english()[4].pcm()], pace_s=0.02))
            first = await call.read()  # the speech-started event: the stream is under way
            assert first.speech_event.type == stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED
            proc.send_signal(signal.SIGTERM)
            finals = []
            while (response := await call.read()) != grpc.aio.EOF:
                finals += [r for r in response.results if r.is_final]
            assert len(finals) == 1, "the in-flight stream was cut instead of finishing"
        assert proc.wait(30) == 0
        assert b'"msg": "ready"' in (proc.stderr.read() if proc.stderr else b"")
    finally:
        proc.kill()
