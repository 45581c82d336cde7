"""The edge client's check that its security settings match what each service speaks (its channels
are built in ``foundation.channels``, as the conversation's links' and the gateway's are)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable

import grpc

from foundation.channels import Security, open_channel, problem

__all__ = ["Security", "check", "open_channel", "problem", "problems"]


def problems(security: Security, addresses: Iterable[str]) -> list[str]:
    """The problems ``security`` has with ``addresses``, found before any connection."""
    return [p for address in addresses if (p := problem(security, address)) is not None]


# A cheap call that needs the token, per service.
_PROBES = {
    "stt": "/voice.stt.v1.SttService/GetInfo",
    "llm": "/voice.llm.v1.LlmService/GetInfo",
    "tts": "/voice.tts.v1.TtsService/ListVoices",
}


def _speaks_tls(address: str, timeout_s: float) -> bool | None:
    """Whether a TLS handshake with ``address`` completes (certificate not checked); None: no connection."""
    host, _, port = address.split("///", 1)[-1].rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        raw = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError):
        return None
    try:
        with context.wrap_socket(raw, server_hostname=host):
            return True
    except OSError:
        return False
    finally:
        raw.close()


async def check(addresses: dict[str, str], security: Security, timeout_s: float = 3.0) -> list[str]:
    """What stops ``security`` from working with each service: a TLS mismatch, a refused token.

    Unreachable or still loading services are left out; the health check reports those.
    """
    problems = []
    for name, address in addresses.items():
        async with open_channel(address, security) as channel:
            call = channel.unary_unary(_PROBES[name], request_serializer=bytes, response_deserializer=bytes)
            try:
                await call(b"", timeout=timeout_s)
                continue
            except grpc.aio.AioRpcError as err:
                code, details = err.code(), err.details() or ""
        where = f"the {name} service at {address}"
        if code == grpc.StatusCode.UNAUTHENTICATED:
            problems.append(f"{where} refused the call: {details}")
        elif code == grpc.StatusCode.UNAVAILABLE:
            tls = await asyncio.to_thread(_speaks_tls, address, timeout_s)
            if tls and not security.tls:
                problems.append(f"{where} speaks TLS: add --tls and --ca CA.crt (env VOICE_AGENT_TLS=1)")
            elif tls is False and security.tls:
                problems.append(f"{where} does not speak TLS: drop --tls, or give the service a certificate")
            elif tls is True and security.tls:
                problems.append(
                    f"TLS with {where} failed ({details}): --ca must name the CA that signed its "
                    "certificate, and mutual TLS needs --cert and --key"
                )
    return problems
