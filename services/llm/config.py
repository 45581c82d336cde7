"""LLM settings, read once from ``LLM_*`` environment variables (and ``CEREBRAS_*``)."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.config import ServerSettings

DEFAULT_PORT = 50052
DEFAULT_METRICS_PORT = 9102
# Replies are spoken aloud: short, plain sentences that a TTS voice reads well.
DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so answer in one to "
    "three short sentences of plain conversational English. Never use markdown, lists, "
    "headings, emoji or code."
)
DEFAULT_CEREBRAS_MODEL = "llama3.1-8b"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CONTEXT_TOKENS = 2048
# A cloud turn must produce its first token within this, retries and backoff included.
DEFAULT_DEADLINE_S = 8.0
# One attempt's connect/read limit (a stalled stream counts as a timeout).
DEFAULT_REQUEST_TIMEOUT_S = 3.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.25
# A spoken user turn is a few sentences; anything longer is a client bug.
DEFAULT_MAX_TURN_CHARS = 4000
# History kept in the prompt (oldest turns dropped first), about 1,500 tokens.
DEFAULT_MAX_HISTORY_CHARS = 6000
# The local engine's model when LLM_MODEL_PATH is empty (services/llm/models.py names them):
# the fast test-grade one; docker-compose.yml runs qwen2.5-coder-1.5b.
DEFAULT_EMBEDDED_MODEL = "smollm2-135m"
# Said once in the log at start and to each client that asks (GetInfo), so nobody takes
# the test model's replies for what the agent can do.
EMBEDDED_MODEL_NOTICE = (
    "the chat service runs the embedded SmolLM2-135M, a test-grade model whose replies are barely "
    "coherent; set CEREBRAS_API_KEY for real replies (or LLM_ENGINE=openai and LLM_BASE_URL for "
    "another server)"
)


class LlmSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_", frozen=True, extra="ignore")

    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    # "cerebras", "openai" or "local"; empty: cerebras when CEREBRAS_API_KEY is set, else local.
    engine: str = ""
    cerebras_api_key: SecretStr = Field(default=SecretStr(""), validation_alias="CEREBRAS_API_KEY")
    # Empty: the SDK's default endpoint. Given without "/v1".
    cerebras_base_url: str = Field(default="", validation_alias="CEREBRAS_BASE_URL")
    # The openai engine's server, with "/v1"; empty: api.openai.com.
    base_url: str = ""
    api_key: SecretStr = SecretStr("")
    # Empty: the engine's default model.
    model: str = ""
    # A GGUF file for the local engine; empty: the embedded model named by embedded_model.
    model_path: str = ""
    embedded_model: str = DEFAULT_EMBEDDED_MODEL
    # "local" answers from the embedded model when the cloud is unavailable; empty: no fallback.
    fallback: str = ""
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    # Threads for the local engine; 0: one per core.
    threads: int = 0
    deadline_s: float = DEFAULT_DEADLINE_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    backoff_s: float = DEFAULT_BACKOFF_S
    max_turn_chars: int = DEFAULT_MAX_TURN_CHARS
    max_history_chars: int = DEFAULT_MAX_HISTORY_CHARS

    @property
    def engine_name(self) -> str:
        """The engine to run, with the empty setting resolved."""
        if self.engine:
            return self.engine
        return "cerebras" if self.cerebras_api_key.get_secret_value() else "local"

    @property
    def notice(self) -> str:
        """What a user of the service should know about its model; empty: nothing."""
        test_grade = not self.model_path and self.embedded_model == DEFAULT_EMBEDDED_MODEL
        return EMBEDDED_MODEL_NOTICE if self.engine_name == "local" and test_grade else ""

    @property
    def thread_count(self) -> int:
        return self.threads or os.cpu_count() or 1
