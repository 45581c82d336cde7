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

    # Loopback by default: any other address needs http_tokens (or http_allow_open) and
    # wyoming_allow_open, as people then reach the listeners from other machines.
    host: str = "127.0.0.1"
    # Where people reach the listeners, when that is not ``host``: a container listens on 0.0.0.0
    # and its ports are published on this address. The rules above go by it; empty: ``host``.
    published_host: str = ""
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
    # The conversations' tools (docs/tools.md): a JSON file of MCP servers in the ``mcpServers``
    # shape, and the time zone of the built-in date-and-time tool (an IANA name; empty: off).
    mcp_config: str = ""
    time_zone: str = ""
    log_level: str = "info"
    # Where the services speak TLS: the CA that signed their certificates (PEM file).
    tls_ca: str = ""
    # The gateway's own certificate and key (PEM files), shown to services that ask for mutual TLS.
    tls_cert: str = ""
    tls_key: str = ""
    # Where they want an access token: the gateway's own, or a file holding it (plaintext to
    # loopback addresses only, else TLS).
    token: SecretStr = SecretStr("")
    token_file: str = ""
    # Callers of the HTTP API send ``Authorization: Bearer <token>`` with one of these: a file
    # with one "name:token" (or bare token) a line, and/or the same comma-separated. Empty both:
    # no token needed, which off loopback needs http_allow_open.
    http_tokens: SecretStr = SecretStr("")
    http_tokens_file: str = ""
    # The HTTP listener's own certificate and key (PEM files): it then speaks HTTPS, which a browser
    # needs to give the page at / a microphone anywhere but on this machine. Empty: plain HTTP.
    http_tls_cert: str = ""
    http_tls_key: str = ""
    # Serve the HTTP API without tokens off loopback (behind a trusted network or proxy only).
    http_allow_open: bool = False
    # Wyoming has no authentication: serve it off loopback only where a trusted network guards it.
    wyoming_allow_open: bool = False
    # Phone calls from Asterisk (AudioSocket) on this port; unset: no phone door; 0 picks a free port.
    audiosocket_port: int | None = None
    # AudioSocket has no authentication: peers off loopback are served only from these networks
    # (comma-separated, e.g. 172.16.0.0/12).
    audiosocket_allow: str = ""
    # WebRTC noise suppression on callers' 8 kHz audio (the phone doors).
    noise_suppression: bool = True
    # Hang up a call after this many seconds with neither side speaking; 0: only the caller hangs up.
    phone_idle_hangup_s: float = 60.0
