"""Server credentials from the TLS settings, and the rule that plaintext stays on loopback."""

from __future__ import annotations

from pathlib import Path

import grpc

from foundation.channels import is_loopback
from services.common.config import ServerSettings
from services.common.errors import ConfigError


def _read(settings: ServerSettings, field: str) -> bytes:
    path = str(getattr(settings, field))
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {settings.env_name(field)}={path}: {exc.strerror}") from exc


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials, or None for plaintext (refused off loopback unless allowed)."""
    cert, key = settings.tls_cert, settings.tls_key
    if bool(cert) != bool(key):
        missing = settings.env_name("tls_key" if cert else "tls_cert")
        raise ConfigError(f"TLS needs both a certificate and a key: set {missing} too")
    if not cert:
        if settings.tls_client_ca:
            raise ConfigError(
                f"{settings.env_name('tls_client_ca')} asks for mutual TLS, which needs "
                f"{settings.env_name('tls_cert')} and {settings.env_name('tls_key')}"
            )
        if not is_loopback(settings.host) and not settings.allow_plaintext:
            raise ConfigError(
                f"refusing to serve plaintext on {settings.host}: set {settings.env_name('tls_cert')} "
                f"and {settings.env_name('tls_key')} (see `make certs`), or "
                f"{settings.env_name('allow_plaintext')}=true where only a private network reaches the port"
            )
        return None
    client_ca = _read(settings, "tls_client_ca") if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(settings, "tls_key"), _read(settings, "tls_cert"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
