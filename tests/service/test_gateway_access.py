"""The gateway as a client of secured services (its own token and certificate), and who may use it:
bearer tokens on its HTTP API, Wyoming kept on loopback unless allowed."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

import httpx2
import openai
import pytest
import websockets
from pydantic import SecretStr
from websockets.http11 import Response
from websockets.typing import Subprotocol

from edge_client.channels import Security, open_channel
from foundation.errors import ConfigError
from harness.gateway_stack import NOWHERE, gateway_settings
from harness.speech import REPO, english
from services.gateway.server import running_gateway
from tests.secure import TOKEN_A, TOKEN_B, TOKENS, make_certs, stt_server
from voice.stt.v1 import stt_pb2, stt_pb2_grpc


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


async def _transcribe(port: int, token: str | None) -> httpx2.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        return await http.post(
            "/v1/audio/transcriptions",
            files={"file": ("speech.wav", english()[5].path.read_bytes(), "audio/wav")},
            headers=headers,
        )


async def _held_stream(address: str, security: Security) -> AsyncGenerator[None, None]:
    """A conversation's STT stream, open until the generator is closed."""
    async with open_channel(address, security) as channel:
        call = stt_pb2_grpc.SttServiceStub(channel).StreamingRecognize()
        await call.write(
            stt_pb2.StreamingRecognizeRequest(config=stt_pb2.RecognitionConfig(sample_rate_hz=16000))
        )
        try:
            yield
        finally:
            call.cancel()


async def test_the_gateway_reaches_mutual_tls_services_with_its_own_token_and_cert(certs: Path) -> None:
    tokens = (certs / "tokens").read_text()
    gateway_token = (certs / "gateway-token").read_text().strip()
    assert f"gateway:{gateway_token}" in tokens and gateway_token != (certs / "token").read_text().strip()
    service = {
        "tls_cert": str(certs / "stt.crt"),
        "tls_key": str(certs / "stt.key"),
        "tls_client_ca": str(certs / "ca.crt"),
        "tokens_file": str(certs / "tokens"),
        # The user's conversation holds the edge token's one stream; the gateway's are its own.
        "client_max_streams": 1,
    }
    async with stt_server(**service) as server:
        address = f"localhost:{server.port}"
        edge = Security(
            tls=True,
            ca=certs / "ca.crt",
            cert=certs / "client.crt",
            key=certs / "client.key",
            token=(certs / "token").read_text().strip(),
        )
        conversation = _held_stream(address, edge)
        await anext(conversation)
        for _ in range(250):
            if server.active_streams == 1:
                break
            await asyncio.sleep(0.02)
        assert server.active_streams == 1
        settings = {
            "tls_ca": str(certs / "ca.crt"),
            "tls_cert": str(certs / "gateway.crt"),
            "tls_key": str(certs / "gateway.key"),
            "token_file": str(certs / "gateway-token"),
        }
        async with running_gateway(gateway_settings(address, **settings)) as ports:
            reply = await _transcribe(ports.http, None)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"text": "hello"}
        # Without its certificate the TLS handshake fails: the service is unavailable to it.
        certless = gateway_settings(address, **{**settings, "tls_cert": "", "tls_key": ""})
        async with running_gateway(certless) as ports:
            assert (await _transcribe(ports.http, None)).status_code == 503
        await conversation.aclose()


async def test_the_http_api_with_tokens_answers_401_without_one_and_200_with_one() -> None:
    async with (
        stt_server() as server,
        running_gateway(gateway_settings(f"127.0.0.1:{server.port}", http_tokens=SecretStr(TOKENS))) as ports,
    ):
        missing = await _transcribe(ports.http, None)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        error = missing.json()["error"]
        assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
        assert "Authorization: Bearer <token>" in error["message"]
        wrong = await _transcribe(ports.http, "x" * 32)
        assert wrong.status_code == 401 and "GATEWAY_HTTP_TOKENS" in wrong.json()["error"]["message"]
        assert (await _transcribe(ports.http, TOKEN_B)).json() == {"text": "hello"}
        base_url = f"http://127.0.0.1:{ports.http}/v1"
        async with openai.AsyncOpenAI(base_url=base_url, api_key="x" * 32, max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()
        async with openai.AsyncOpenAI(base_url=base_url, api_key=TOKEN_A, max_retries=0) as client:
            transcript = await client.audio.transcriptions.create(model="whisper-1", file=english()[5].path)
        assert transcript.text == "hello"
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{ports.http}") as http:
            # The container's healthcheck asks without a token.
            assert (await http.get("/health")).status_code in (200, 503)


async def test_wyoming_off_loopback_is_refused_without_the_allow_setting() -> None:
    tokens = SecretStr(TOKEN_A)
    with pytest.raises(ConfigError, match="GATEWAY_WYOMING_ALLOW_OPEN=true"):
        async with running_gateway(gateway_settings("127.0.0.1:9", host="0.0.0.0", http_tokens=tokens)):
            pass
    with pytest.raises(ConfigError, match="GATEWAY_HTTP_TOKENS_FILE"):
        async with running_gateway(gateway_settings("127.0.0.1:9", host="0.0.0.0", wyoming_allow_open=True)):
            pass
    # In a container it listens on 0.0.0.0; where its ports are published decides.
    with pytest.raises(ConfigError, match=r"on 0\.0\.0\.0 \(GATEWAY_PUBLISHED_HOST\)"):
        published = gateway_settings("127.0.0.1:9", published_host="0.0.0.0", http_tokens=tokens)
        async with running_gateway(published):
            pass
    allowed = gateway_settings("127.0.0.1:9", host="0.0.0.0", http_tokens=tokens, wyoming_allow_open=True)
    async with running_gateway(allowed) as ports:
        _, writer = await asyncio.open_connection("127.0.0.1", ports.wyoming_stt)
        writer.close()
        await writer.wait_closed()
    async with running_gateway(gateway_settings("127.0.0.1:9", host="0.0.0.0", published_host="127.0.0.1")):
        pass


def test_the_gateway_process_says_why_it_will_not_start() -> None:
    env = {
        **os.environ,
        "GATEWAY_HOST": "0.0.0.0",
        "GATEWAY_HTTP_PORT": "0",
        "GATEWAY_WYOMING_STT_PORT": "0",
        "GATEWAY_WYOMING_TTS_PORT": "0",
        "GATEWAY_HTTP_TOKENS": TOKEN_A,
    }
    env.pop("GATEWAY_WYOMING_ALLOW_OPEN", None)
    command = [sys.executable, "-m", "services.gateway"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    refusal = "gateway: refusing to serve Wyoming on 0.0.0.0 (GATEWAY_HOST)"
    assert done.stderr.splitlines()[-1].startswith(refusal)
    assert TOKEN_A not in done.stderr


async def test_the_page_and_realtime_go_over_https_and_need_a_token(certs: Path) -> None:
    """What a browser on another machine needs: the page over HTTPS with the gateway's certificate,
    and /v1/realtime over wss, with a token in the subprotocol a browser can send."""
    settings = gateway_settings(
        stt_address=NOWHERE,
        http_tls_cert=str(certs / "gateway.crt"),
        http_tls_key=str(certs / "gateway.key"),
        http_tokens=SecretStr(TOKENS),
    )
    trust = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    async with running_gateway(settings) as ports:
        async with httpx2.AsyncClient(verify=trust) as http:
            page = await http.get(f"https://127.0.0.1:{ports.http}/")
        assert page.status_code == 200 and "getUserMedia" in page.text
        url = f"wss://127.0.0.1:{ports.http}/v1/realtime"

        async def refusal(protocols: list[Subprotocol] | None, headers: dict[str, str]) -> Response:
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(url, ssl=trust, subprotocols=protocols, additional_headers=headers)
            return refused.value.response

        # Refused at the handshake with what to do, as the HTTP API words it.
        missing = await refusal(None, {})
        error = json.loads(missing.body or b"{}")["error"]
        assert (missing.status_code, error["type"]) == (401, "authentication_error"), missing
        assert "Authorization: Bearer <token>" in error["message"], error
        # A wrong token, in either place a client can put one, is refused and named as wrong.
        wrong = "x" * 32
        for protocols, headers in (
            ([Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{wrong}")], {}),
            (None, {"authorization": f"Bearer {wrong}"}),
        ):
            refused = await refusal(protocols, headers)
            error = json.loads(refused.body or b"{}")["error"]
            assert refused.status_code == 401 and "was not accepted" in error["message"], refused
        browser = [Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{TOKEN_A}")]
        program = {"authorization": f"Bearer {TOKEN_B}"}
        for protocols, headers in ((browser, {}), (None, program)):
            async with websockets.connect(
                url, ssl=trust, subprotocols=protocols, additional_headers=headers
            ) as ws:
                assert json.loads(await ws.recv())["type"] == "session.created"
