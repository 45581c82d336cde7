"""Any OpenAI-compatible ``/v1/chat/completions`` server, through the ``openai`` SDK."""

from __future__ import annotations

from typing import Any, cast

import httpx2
from openai import APIConnectionError, APIStatusError, OpenAI

from services.llm.config import DEFAULT_OPENAI_BASE_URL, DEFAULT_OPENAI_MODEL, LlmSettings
from services.llm.engine import Session
from services.llm.engines.chat_api import ApiErrors, ChatApiSession, ChatStream, RetryPolicy

# The server's real context is unknown; this is what the service assumes.
CONTEXT_TOKENS = 8192
# Servers that need no key (llama.cpp, vLLM, Ollama) still get a non-empty one.
NO_KEY = "none"


class OpenAiEngine:
    name = "openai"
    context_tokens = CONTEXT_TOKENS

    def __init__(self, settings: LlmSettings) -> None:
        self.model = settings.model or DEFAULT_OPENAI_MODEL
        self._policy = RetryPolicy(
            settings.deadline_s, settings.request_timeout_s, settings.retries, settings.backoff_s
        )
        self._client = OpenAI(
            api_key=settings.api_key.get_secret_value() or NO_KEY,
            base_url=settings.base_url or DEFAULT_OPENAI_BASE_URL,
            max_retries=0,  # retries happen in ChatApiSession, inside the turn's deadline
        )

    def load(self) -> None:
        pass

    def open_session(self) -> Session:
        return ChatApiSession(
            self.name,
            self.model,
            self._create,
            ApiErrors(APIStatusError, (APIConnectionError, httpx2.TransportError)),
            self._policy,
        )

    def _create(
        self,
        messages: list[dict[str, Any]],
        model: str,
        temperature: float,
        max_tokens: int,
        timeout_s: float,
        tools: dict[str, Any],
    ) -> ChatStream:
        stream = self._client.chat.completions.create(
            messages=cast(Any, messages),
            model=model,
            stream=True,
            temperature=temperature,
            max_tokens=max_tokens,
            stream_options={"include_usage": True},
            timeout=timeout_s,
            **tools,
        )
        return cast(ChatStream, stream)
