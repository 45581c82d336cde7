"""The one place a client of the services makes a channel: plaintext or TLS, a client certificate
for mutual TLS, an access token. The edge client and the gateway both open theirs here.

A token goes over TLS, or in plaintext to a loopback address only (the same rule as a server's
plaintext port): a token sent in plaintext off this machine is refused with ConfigError.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from foundation.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SettingNames:
    """How a person sets each part of ``Security`` (flags or environment variables), for messages."""

    # What to add for TLS.
    tls: str = "add --tls (and --ca)"
    ca: str = "--ca"
    cert: str = "--cert"
    key: str = "--key"


# The edge client's flags; the gateway names its GATEWAY_* variables.
FLAGS = SettingNames()


@dataclass(frozen=True)
class Security:
    """How to reach the services: TLS (trusting ``ca``, else the system's roots), a client
    certificate for mutual TLS, an access token."""

    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token: str = field(default="", repr=False)
    names: SettingNames = field(default=FLAGS, repr=False, compare=False)


def _host(address: str) -> str:
    address = address.split("///", 1)[-1]  # dns:///host:port
    if address.startswith("["):
        return address[1 : address.find("]")]
    return address.rpartition(":")[0] if address.count(":") == 1 else address


def _given(name: str, path: Path) -> str:
    return f"{name} {path}" if name.startswith("-") else f"{name}={path}"


def problem(security: Security, address: str) -> str | None:
    """Why ``security`` cannot be used for ``address``, or None."""
    names = security.names
    if bool(security.cert) != bool(security.key):
        return f"mutual TLS needs both {names.cert} and {names.key}"
    if security.token and not security.tls and not is_loopback(_host(address)):
        return f"refusing to send the access token in plaintext to {address}: {names.tls}"
    for name, path in ((names.ca, security.ca), (names.cert, security.cert), (names.key, security.key)):
        if path is not None and not path.is_file():
            return f"cannot read {_given(name, path)}: no such file"
    return None


def _read(name: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {_given(name, path)}: {exc.strerror}") from exc


def credentials(security: Security) -> grpc.ChannelCredentials:
    """Channel credentials for ``security``; ConfigError when a file cannot be read."""
    names = security.names
    if security.tls:
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read(names.ca, security.ca),
            private_key=_read(names.key, security.key),
            certificate_chain=_read(names.cert, security.cert),
        )
    else:
        # Plaintext that still carries call credentials; it only connects over loopback.
        creds = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    if security.token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(security.token))
    return creds


def open_channel(
    address: str, security: Security, options: Sequence[tuple[str, int | str]] = ()
) -> grpc.aio.Channel:
    """A channel to ``address`` with ``security``; ConfigError (saying what to set) if it cannot work."""
    if (reason := problem(security, address)) is not None:
        raise ConfigError(reason)
    if not security.tls and not security.token:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials(security), options=options)
