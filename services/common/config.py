"""Settings every server shares; each service extends them with its own prefix."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_STREAMS = 16
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_GRACE_S = 10.0


class ServerSettings(BaseSettings):
    """Read once from the environment at start; subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    host: str = "0.0.0.0"
    port: int = 0
    # Prometheus /metrics port; 0 turns it off.
    metrics_port: int = 0
    # Streaming RPCs served at once; more get RESOURCE_EXHAUSTED.
    max_streams: int = DEFAULT_MAX_STREAMS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Seconds in-flight RPCs get to finish after SIGTERM.
    grace_s: float = DEFAULT_GRACE_S
    log_level: str = "info"
