"""The one channel builder the edge client and the gateway share: what it refuses, and how it says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from foundation.channels import Security, open_channel
from foundation.errors import ConfigError
from services.common.auth import Tokens
from services.gateway.access import check_listeners
from services.gateway.channels import Backends, security
from services.gateway.config import GatewaySettings

TOKEN = "t" * 24


def test_a_missing_file_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    with pytest.raises(ConfigError, match=r"cannot read --ca .*nope\.crt: no such file"):
        open_channel("voice.example.com:50051", Security(tls=True, ca=missing))
    with pytest.raises(ConfigError, match=r"cannot read GATEWAY_TLS_CA=.*nope\.crt"):
        Backends.connect(GatewaySettings(tls_ca=str(missing)))
    with pytest.raises(ConfigError, match=r"cannot read GATEWAY_TOKEN_FILE=.*nope\.crt"):
        security(GatewaySettings(token_file=str(missing)))


def test_a_certificate_without_its_key_is_a_config_error(tmp_path: Path) -> None:
    cert = tmp_path / "client.crt"
    cert.write_text("not read before the key is there too")
    with pytest.raises(ConfigError, match="mutual TLS needs both --cert and --key"):
        open_channel("voice.example.com:50051", Security(tls=True, cert=cert))
    with pytest.raises(ConfigError, match="mutual TLS needs both GATEWAY_TLS_CERT and GATEWAY_TLS_KEY"):
        Backends.connect(GatewaySettings(tls_cert=str(cert)))


async def test_a_token_goes_in_plaintext_to_loopback_only() -> None:
    for address in ("127.0.0.1:50051", "localhost:50051", "[::1]:50051"):
        await open_channel(address, Security(token=TOKEN)).close()
    with pytest.raises(ConfigError, match=r"plaintext to voice\.example\.com:50051: add --tls"):
        open_channel("voice.example.com:50051", Security(token=TOKEN))
    with pytest.raises(ConfigError, match="plaintext to stt:50051: set GATEWAY_TLS_CA"):
        Backends.connect(GatewaySettings(token=SecretStr(TOKEN)))
    loopback = GatewaySettings(
        stt_address="127.0.0.1:1",
        llm_address="127.0.0.1:2",
        tts_address="localhost:3",
        token=SecretStr(TOKEN),
    )
    await Backends.connect(loopback).close()


def test_the_gateway_presents_its_certificate_and_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    settings = GatewaySettings(
        tls_ca="ca.crt", tls_cert="gateway.crt", tls_key="gateway.key", token_file=str(tmp_path / "token")
    )
    reach = security(settings)
    assert reach.tls and (reach.ca, reach.cert, reach.key) == (
        Path("ca.crt"),
        Path("gateway.crt"),
        Path("gateway.key"),
    )
    assert reach.token == TOKEN and TOKEN not in repr(reach)


def test_listeners_off_loopback_need_tokens_and_an_explicit_wyoming_allow() -> None:
    tokens = Tokens([("alice", TOKEN.encode())])
    open_ = Tokens([])
    check_listeners(GatewaySettings(), open_)
    check_listeners(GatewaySettings(host="0.0.0.0", published_host="127.0.0.1"), open_)
    with pytest.raises(ConfigError, match=r"without access tokens on 0\.0\.0\.0 \(GATEWAY_HOST\)"):
        check_listeners(GatewaySettings(host="0.0.0.0", wyoming_allow_open=True), open_)
    with pytest.raises(ConfigError, match=r"Wyoming on 192\.168\.1\.5 \(GATEWAY_PUBLISHED_HOST\)"):
        check_listeners(GatewaySettings(host="0.0.0.0", published_host="192.168.1.5"), tokens)
    check_listeners(GatewaySettings(host="0.0.0.0", wyoming_allow_open=True), tokens)
    check_listeners(GatewaySettings(host="0.0.0.0", wyoming_allow_open=True, http_allow_open=True), open_)
