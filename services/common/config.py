"""Settings every server shares; each service extends them with its own prefix."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_STREAMS = 16
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_GRACE_S = 10.0
# Per access token, when tokens are configured: one conversation holds one stream per service,
# and a reconnect briefly holds two.
DEFAULT_CLIENT_MAX_STREAMS = 4
DEFAULT_CLIENT_MAX_REQUESTS_PER_MIN = 120
# A stream with no message either way for this long is closed; the edge client reconnects.
DEFAULT_STREAM_IDLE_S = 600.0


class ServerSettings(BaseSettings):
    """Read once from the environment at start; subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # Loopback by default: any other address needs TLS (tls_cert, tls_key) or allow_plaintext.
    host: str = "127.0.0.1"
    port: int = 0
    # Prometheus /metrics port; 0 turns it off.
    metrics_port: int = 0
    # Streaming RPCs served at once; more get RESOURCE_EXHAUSTED.
    max_streams: int = DEFAULT_MAX_STREAMS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Seconds in-flight RPCs get to finish after SIGTERM.
    grace_s: float = DEFAULT_GRACE_S
    log_level: str = "info"
    # PEM files: the server's certificate (chain) and key; with client_ca, clients must
    # present a certificate signed by it (mutual TLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Serve plaintext on an address other than loopback (behind a private network only).
    allow_plaintext: bool = False
    # Access tokens: a file with one "name:token" (or bare token) a line, and/or the same
    # comma-separated. Empty both: no token needed.
    tokens_file: str = ""
    tokens: SecretStr = SecretStr("")
    client_max_streams: int = DEFAULT_CLIENT_MAX_STREAMS
    client_max_requests_per_min: int = DEFAULT_CLIENT_MAX_REQUESTS_PER_MIN
    # 0: streams may stay idle for ever.
    stream_idle_s: float = DEFAULT_STREAM_IDLE_S
    reflection: bool = True
    # A plaintext port that answers only grpc.health.v1 (Kubernetes' gRPC probes speak no TLS); 0: off.
    health_port: int = 0

    def env_name(self, field: str) -> str:
        """The environment variable that sets ``field``, for messages."""
        return f"{self.model_config.get('env_prefix', '')}{field}".upper()

    def secrets(self) -> list[str]:
        """Every secret value this process holds in its settings (for log redaction)."""
        return [
            value.get_secret_value()
            for value in vars(self).values()
            if isinstance(value, SecretStr) and value.get_secret_value()
        ]
