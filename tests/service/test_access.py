"""Access tokens on every RPC of the three services, and the per-client limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from pydantic import SecretStr

from edge_client.channels import Security, check, open_channel
from harness.speech import english
from harness.stt_client import stream
from services.common.server import build_server
from services.llm.config import LlmSettings
from services.llm.engine import create_engine as create_llm
from services.llm.servicer import LlmServicer
from services.tts.config import TtsSettings
from services.tts.engine import create_engine as create_tts
from services.tts.servicer import TtsServicer
from tests.secure import TOKEN_A, TOKEN_B, TOKENS, stt_server
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2, stt_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

CONFIG = stt_pb2.RecognitionConfig(sample_rate_hz=16000)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _refusals(
    channel: grpc.aio.Channel, service: object, metadata: tuple[tuple[str, str], ...]
) -> dict[str, tuple[grpc.StatusCode, str]]:
    """Each RPC of ``service`` (a descriptor) called with ``metadata``: its status and message."""
    outcomes = {}
    for method in service.methods:  # type: ignore[attr-defined]
        path = f"/{service.full_name}/{method.name}"  # type: ignore[attr-defined]
        try:
            if method.client_streaming:

                async def one() -> AsyncIterator[bytes]:
                    yield b""

                call = channel.stream_stream(path, request_serializer=bytes, response_deserializer=bytes)
                async for _ in call(one(), metadata=metadata, timeout=10):
                    pass
            else:
                await channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)(
                    b"", metadata=metadata, timeout=10
                )
            outcomes[method.name] = (grpc.StatusCode.OK, "")
        except grpc.aio.AioRpcError as err:
            outcomes[method.name] = (err.code(), err.details() or "")
    return outcomes


async def test_every_rpc_of_the_three_services_needs_a_valid_token() -> None:
    llm_settings = LlmSettings(
        host="127.0.0.1", port=0, metrics_port=0, engine="local", tokens=SecretStr(TOKENS)
    )
    tts_settings = TtsSettings(host="127.0.0.1", port=0, metrics_port=0, tokens=SecretStr(TOKENS))
    llm = LlmServicer(create_llm(llm_settings), llm_settings)
    tts = TtsServicer(create_tts(tts_settings), tts_settings)
    servers = [
        (llm_settings, lambda s: llm_pb2_grpc.add_LlmServiceServicer_to_server(llm, s), llm_pb2.DESCRIPTOR),
        (tts_settings, lambda s: tts_pb2_grpc.add_TtsServiceServicer_to_server(tts, s), tts_pb2.DESCRIPTOR),
    ]
    async with stt_server(tokens=TOKENS) as stt:
        ports = [(stt.port, stt_pb2.DESCRIPTOR)]
        started = []
        for settings, register, descriptor in servers:
            server = await build_server(
                settings,
                register,
                [descriptor.services_by_name[name].full_name for name in descriptor.services_by_name],
            )
            await server.set_ready()
            started.append(server)
            ports.append((server.port, descriptor))
        try:
            for port, descriptor in ports:
                (service,) = descriptor.services_by_name.values()
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    bad = [
                        ((), "needs an access token"),
                        (_bearer("x" * 24), "not accepted"),
                        ((("authorization", TOKEN_A),), "Bearer <token>"),
                    ]
                    for metadata, words in bad:
                        outcomes = await _refusals(channel, service, metadata)
                        assert {m: code for m, (code, _) in outcomes.items()} == {
                            m.name: grpc.StatusCode.UNAUTHENTICATED for m in service.methods
                        }, service.full_name
                        assert all(words in text for _, text in outcomes.values()), outcomes
                        assert all(TOKEN_A not in text for _, text in outcomes.values())
                    # Health stays open; with the token the calls get past the gate (empty requests
                    # are then refused by the services themselves, not by access control).
                    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                    outcomes = await _refusals(channel, service, _bearer(TOKEN_A))
                    assert grpc.StatusCode.UNAUTHENTICATED not in {code for code, _ in outcomes.values()}
        finally:
            for server in started:
                await server.stop(0)


async def test_a_good_token_streams_and_reflection_needs_none() -> None:
    async with (
        stt_server(tokens=TOKENS) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch,
    ):
        stub = stt_pb2_grpc.SttServiceStub(ch)
        outcome = await stream(stub, CONFIG, [english()[5].pcm()], metadata=_bearer(TOKEN_B))
        assert outcome.text == "hello"
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as sync_channel:
            services = await asyncio.to_thread(ProtoReflectionDescriptorDatabase(sync_channel).get_services)
        assert "voice.stt.v1.SttService" in services


async def test_reflection_can_be_turned_off() -> None:
    async with stt_server(reflection=False) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel, pytest.raises(grpc.RpcError):
            await asyncio.to_thread(ProtoReflectionDescriptorDatabase(channel).get_services)


async def _open_stream(stub: stt_pb2_grpc.SttServiceStub, token: str) -> grpc.aio.StreamStreamCall:
    call = stub.StreamingRecognize(metadata=_bearer(token))
    await call.write(stt_pb2.StreamingRecognizeRequest(config=CONFIG))
    return call


async def _wait_for(condition: object, limit_s: float = 5.0) -> None:
    for _ in range(int(limit_s / 0.02)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_the_stream_beyond_a_tokens_limit_is_refused_while_another_token_is_served() -> None:
    async with (
        stt_server(tokens=TOKENS, client_max_streams=2) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = stt_pb2_grpc.SttServiceStub(channel)
        held = [await _open_stream(stub, TOKEN_A) for _ in range(2)]
        await _wait_for(lambda: server.active_streams == 2)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream(stub, CONFIG, [b"\0\0"], metadata=_bearer(TOKEN_A))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "client_max_streams" in (err.value.details() or "")
        assert (await stream(stub, CONFIG, [english()[5].pcm()], metadata=_bearer(TOKEN_B))).text == "hello"
        # Unary calls are not streams, and a closed stream frees its place.
        await stub.GetInfo(stt_pb2.GetInfoRequest(), metadata=_bearer(TOKEN_A))
        await held[0].done_writing()
        async for _ in held[0]:
            pass
        await _wait_for(lambda: server.active_streams == 1)
        assert (await stream(stub, CONFIG, [english()[5].pcm()], metadata=_bearer(TOKEN_A))).text == "hello"
        held[1].cancel()


async def test_requests_beyond_a_tokens_rate_are_refused_naming_the_limit() -> None:
    async with (
        stt_server(tokens=TOKENS, client_max_requests_per_min=3) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = stt_pb2_grpc.SttServiceStub(channel)
        for _ in range(3):
            await stub.GetInfo(stt_pb2.GetInfoRequest(), metadata=_bearer(TOKEN_A))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetInfo(stt_pb2.GetInfoRequest(), metadata=_bearer(TOKEN_A))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "client_max_requests_per_min" in (err.value.details() or "")
        await stub.GetInfo(stt_pb2.GetInfoRequest(), metadata=_bearer(TOKEN_B))


async def test_an_idle_stream_is_closed_and_a_busy_one_is_not() -> None:
    async with (
        stt_server(tokens=TOKENS, stream_idle_s=0.5) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = stt_pb2_grpc.SttServiceStub(channel)
        # Audio every 100 ms for about 3 s: never idle for 0.5 s.
        busy = asyncio.create_task(
            stream(stub, CONFIG, [english()[5].pcm()[: 16000 * 2 * 3]], pace_s=0.1, metadata=_bearer(TOKEN_A))
        )
        idle = await _open_stream(stub, TOKEN_B)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in idle:
                pass
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stream_idle_s" in (err.value.details() or "")
        assert (await busy).text == "hello"
        await _wait_for(lambda: server.active_streams == 0)


async def test_the_edge_client_channel_sends_its_token_in_plaintext_over_loopback() -> None:
    async with stt_server(tokens=TOKENS) as server:
        address = f"127.0.0.1:{server.port}"
        async with open_channel(address, Security(token=TOKEN_B)) as channel:
            reply = await stt_pb2_grpc.SttServiceStub(channel).GetInfo(stt_pb2.GetInfoRequest())
        assert reply.model == "fixed"
        assert await check({"stt": address}, Security(token=TOKEN_B)) == []
