"""The edge client's TLS and token flags, and their environment defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_client.config import from_args, parser


def test_flags_and_environment_make_the_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not from_args(parser().parse_args([])).security.tls
    security = from_args(parser().parse_args(["--ca", "ca.crt", "--token", "t" * 20])).security
    assert security.tls and security.ca == Path("ca.crt") and security.token == "t" * 20
    monkeypatch.setenv("VOICE_AGENT_TLS", "1")
    monkeypatch.setenv("VOICE_AGENT_TOKEN", "e" * 20)
    monkeypatch.setenv("VOICE_AGENT_CERT", "client.crt")
    monkeypatch.setenv("VOICE_AGENT_KEY", "client.key")
    security = from_args(parser().parse_args([])).security
    assert security.tls and security.token == "e" * 20
    assert (security.cert, security.key) == (Path("client.crt"), Path("client.key"))
    assert "e" * 20 not in repr(security), "the token must not show in a printed setting"
