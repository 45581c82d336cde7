"""TLS and mutual TLS in build_server, the healthcheck over TLS, and the edge client's channels."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from edge_client.channels import Security, check, open_channel, problem
from foundation.errors import ConfigError
from harness.edge import silence, write_wav
from harness.speech import REPO
from services.common.tls import server_credentials
from services.gateway.channels import Backends
from services.gateway.config import GatewaySettings
from services.stt.config import SttSettings
from tests.secure import TOKEN_A, TOKENS, make_certs, stt_server
from voice.stt.v1 import stt_pb2, stt_pb2_grpc


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _tls(certs: Path, **more: object) -> dict[str, object]:
    return {"tls_cert": str(certs / "stt.crt"), "tls_key": str(certs / "stt.key"), **more}


def _client(certs: Path, with_cert: bool = False) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.crt").read_bytes(),
        private_key=(certs / "client.key").read_bytes() if with_cert else None,
        certificate_chain=(certs / "client.crt").read_bytes() if with_cert else None,
    )


async def _info(channel: grpc.aio.Channel) -> str:
    reply = await stt_pb2_grpc.SttServiceStub(channel).GetInfo(stt_pb2.GetInfoRequest(), timeout=5)
    return str(reply.model)


async def test_a_client_with_the_ca_talks_to_a_tls_server(certs: Path) -> None:
    async with (
        stt_server(**_tls(certs)) as server,
        grpc.aio.secure_channel(f"localhost:{server.port}", _client(certs)) as channel,
    ):
        assert await _info(channel) == "fixed"


async def test_a_plaintext_client_on_a_tls_port_fails_and_is_told_to_use_tls(certs: Path) -> None:
    async with stt_server(**_tls(certs)) as server:
        address = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _info(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        problems = await check({"stt": address}, Security())
        assert len(problems) == 1 and "speaks TLS: add --tls" in problems[0]


async def test_a_tls_client_on_a_plaintext_port_is_told_so(certs: Path) -> None:
    async with stt_server() as server:
        problems = await check({"stt": f"127.0.0.1:{server.port}"}, Security(tls=True, ca=certs / "ca.crt"))
    assert len(problems) == 1 and "does not speak TLS" in problems[0]


async def test_mutual_tls_refuses_a_client_without_a_certificate(certs: Path) -> None:
    async with stt_server(**_tls(certs, tls_client_ca=str(certs / "ca.crt"))) as server:
        address = f"localhost:{server.port}"
        async with grpc.aio.secure_channel(address, _client(certs)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _info(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.secure_channel(address, _client(certs, with_cert=True)) as channel:
            assert await _info(channel) == "fixed"


async def test_the_edge_client_channel_speaks_tls_with_a_token_and_a_client_certificate(certs: Path) -> None:
    settings = _tls(certs, tls_client_ca=str(certs / "ca.crt"), tokens=TOKENS)
    async with stt_server(**settings) as server:
        address = f"localhost:{server.port}"
        good = Security(tls=True, ca=certs / "ca.crt", cert=certs / "client.crt", key=certs / "client.key")
        async with open_channel(address, Security(**{**vars(good), "token": TOKEN_A})) as channel:
            assert await _info(channel) == "fixed"
        assert await check({"stt": address}, Security(**{**vars(good), "token": TOKEN_A})) == []
        refused = await check({"stt": address}, good)
        assert len(refused) == 1 and "access token" in refused[0]


def test_a_token_is_never_sent_in_plaintext_off_this_machine() -> None:
    assert problem(Security(token=TOKEN_A), "127.0.0.1:50051") is None
    assert problem(Security(token=TOKEN_A), "localhost:50051") is None
    assert "plaintext" in (problem(Security(token=TOKEN_A), "voice.example.com:50051") or "")
    assert problem(Security(tls=True, token=TOKEN_A), "voice.example.com:50051") is None
    assert "both --cert and --key" in (problem(Security(tls=True, cert=Path("c.crt")), "h:1") or "")


def test_plaintext_off_loopback_needs_tls_or_an_explicit_setting(certs: Path) -> None:
    with pytest.raises(ConfigError, match="STT_TLS_CERT"):
        server_credentials(SttSettings(host="0.0.0.0"))
    assert server_credentials(SttSettings(host="0.0.0.0", allow_plaintext=True)) is None
    assert server_credentials(SttSettings(host="127.0.0.1")) is None
    with pytest.raises(ConfigError, match="STT_TLS_KEY"):
        server_credentials(SttSettings(tls_cert=str(certs / "stt.crt")))
    with pytest.raises(ConfigError, match="cannot read STT_TLS_KEY"):
        server_credentials(SttSettings(tls_cert=str(certs / "stt.crt"), tls_key="/nonexistent.key"))


async def test_the_healthcheck_speaks_tls_as_its_service_does(certs: Path) -> None:
    settings = _tls(certs, tls_client_ca=str(certs / "ca.crt"), tokens=TOKENS, health_port=0)
    async with stt_server(**settings) as server:
        env = {
            **os.environ,
            "STT_TLS_CERT": str(certs / "stt.crt"),
            "STT_TLS_KEY": str(certs / "stt.key"),
            "STT_TLS_CLIENT_CA": str(certs / "ca.crt"),
            "PYTHONPATH": f"{REPO}:{REPO / 'protos'}",
        }
        command = [sys.executable, "-m", "services.common.healthcheck", f"127.0.0.1:{server.port}"]
        done = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "SERVING" in done.stdout


async def test_a_plaintext_health_port_answers_health_only(certs: Path) -> None:
    async with (
        stt_server(**_tls(certs, tokens=TOKENS, health_port=_free_port())) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as channel,
    ):
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _info(channel)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_voice_agent_without_tls_is_told_to_add_it(certs: Path, tmp_path: Path) -> None:
    async with stt_server(**_tls(certs, tokens=TOKENS)) as server:
        address = f"127.0.0.1:{server.port}"
        wav = write_wav(tmp_path / "in.wav", silence(0.5))
        out = tmp_path / "out.wav"
        base = [sys.executable, "-m", "edge_client", "--input", str(wav), "--output", str(out),
                "--stt", address, "--llm", address, "--tts", address]  # fmt: skip
        run = functools.partial(subprocess.run, cwd=REPO, capture_output=True, text=True, timeout=60)
        plain = await asyncio.to_thread(run, base)
        assert plain.returncode == 2
        assert f"the stt service at {address} speaks TLS: add --tls" in plain.stderr
        env = {**os.environ, "VOICE_AGENT_TLS": "1", "VOICE_AGENT_CA": str(certs / "ca.crt")}
        tokenless = await asyncio.to_thread(run, base, env=env)
        assert tokenless.returncode == 2
        assert f"the stt service at {address} refused the call: this service needs an access token" in (
            tokenless.stderr
        )


async def test_the_gateway_reaches_services_that_want_tls_and_a_token(certs: Path) -> None:
    async with stt_server(**_tls(certs, tokens=TOKENS)) as server:
        address = f"localhost:{server.port}"
        plain = Backends.connect(GatewaySettings(stt_address=address))
        with pytest.raises(grpc.aio.AioRpcError):
            await plain.stt.GetInfo(stt_pb2.GetInfoRequest(), timeout=5)
        await plain.close()
        (certs / "gateway-token").write_text(TOKEN_A + "\n")
        settings = GatewaySettings(
            stt_address=address, tls_ca=str(certs / "ca.crt"), token_file=str(certs / "gateway-token")
        )
        secure = Backends.connect(settings)
        try:
            assert (await secure.stt.GetInfo(stt_pb2.GetInfoRequest(), timeout=5)).model == "fixed"
        finally:
            await secure.close()
    # As the edge client's: a token goes in plaintext to loopback only.
    with pytest.raises(ConfigError, match="plaintext to stt:50051: set GATEWAY_TLS_CA"):
        Backends.connect(GatewaySettings(stt_address="stt:50051", token=SecretStr(TOKEN_A)))
