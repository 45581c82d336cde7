"""Gateway settings, read once from ``GATEWAY_*`` environment variables and the services' addresses."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HTTP_PORT = 8000
DEFAULT_WYOMING_STT_PORT = 10300
DEFAULT_WYOMING_TTS_PORT = 10200
DEFAULT_STT_ADDRESS = "stt:50051"
DEFAULT_LLM_ADDRESS = "llm:50052"
DEFAULT_TTS_ADDRESS = "tts:50053"
# Seconds a unary call (info, voices, models) may take before the client gets 504.
DEFAULT_INFO_TIMEOUT_S = 5.0


def _address(name: str, default: str) -> str:
    return Field(default=default, validation_alias=AliasChoices(f"GATEWAY_{name}", name))


class GatewaySettings(BaseSettings):
    """One per process; ``STT_ADDRESS`` and ``GATEWAY_STT_ADDRESS`` both set the STT address."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", frozen=True, extra="ignore", populate_by_name=True
    )

    host: str = "0.0.0.0"
    # OpenAI-compatible HTTP API; 0 picks a free port.
    http_port: int = DEFAULT_HTTP_PORT
    # Wyoming speech-to-text and text-to-speech (Home Assistant's defaults); 0 picks a free port.
    wyoming_stt_port: int = DEFAULT_WYOMING_STT_PORT
    wyoming_tts_port: int = DEFAULT_WYOMING_TTS_PORT
    stt_address: str = _address("STT_ADDRESS", DEFAULT_STT_ADDRESS)
    llm_address: str = _address("LLM_ADDRESS", DEFAULT_LLM_ADDRESS)
    tts_address: str = _address("TTS_ADDRESS", DEFAULT_TTS_ADDRESS)
    # Send Wyoming transcript-start/-chunk/-stop around each transcript; the STT service then
    # ends a final at each pause, so the chunks come while the audio still streams.
    transcript_streaming: bool = True
    info_timeout_s: float = DEFAULT_INFO_TIMEOUT_S
    log_level: str = "info"
    # Where the services speak TLS: the CA that signed their certificates (PEM file).
    tls_ca: str = ""
    # Where they want an access token: the token, or a file holding it (needs TLS).
    token: SecretStr = SecretStr("")
    token_file: str = ""
