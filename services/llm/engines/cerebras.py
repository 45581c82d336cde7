"""Cerebras Inference through the official ``cerebras_cloud_sdk``, streaming."""

from __future__ import annotations

from typing import Any, cast

import httpx
from cerebras.cloud.sdk import APIConnectionError, APIStatusError, Cerebras

from services.common.errors import ConfigError
from services.llm.config import DEFAULT_CEREBRAS_MODEL, LlmSettings
from services.llm.engine import Session
from services.llm.engines.chat_api import ApiErrors, ChatApiSession, ChatStream, RetryPolicy

# Cerebras' Llama 3.1 8B serves an 8k context.
CONTEXT_TOKENS = 8192


class CerebrasEngine:
    name = "cerebras"
    context_tokens = CONTEXT_TOKENS

    def __init__(self, settings: LlmSettings) -> None:
        key = settings.cerebras_api_key.get_secret_value()
        if not key:
            raise ConfigError(
                "LLM_ENGINE=cerebras needs an API key: set CEREBRAS_API_KEY "
                "(or leave LLM_ENGINE empty to use the embedded local model)"
            )
        self.model = settings.model or DEFAULT_CEREBRAS_MODEL
        self._policy = RetryPolicy(
            settings.deadline_s, settings.request_timeout_s, settings.retries, settings.backoff_s
        )
        self._key = key
        self._base_url = settings.cerebras_base_url or None
        self._client: Cerebras | None = None

    def load(self) -> None:
        # The SDK warms its TCP connection at construction; only worth it for the real cloud.
        self._client = Cerebras(
            api_key=self._key,
            base_url=self._base_url,
            max_retries=0,  # retries happen in ChatApiSession, inside the turn's deadline
            warm_tcp_connection=self._base_url is None,
        )

    def open_session(self) -> Session:
        return ChatApiSession(
            self.name,
            self.model,
            self._create,
            ApiErrors(APIStatusError, (APIConnectionError, httpx.TransportError)),
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
        if self._client is None:
            self.load()
        assert self._client is not None
        stream = self._client.chat.completions.create(
            messages=cast(Any, messages),
            model=model,
            stream=True,
            temperature=temperature,
            # max_tokens, not max_completion_tokens: OpenAI-compatible servers all honour it.
            max_tokens=max_tokens,
            stream_options={"include_usage": True},
            timeout=timeout_s,
            **tools,
        )
        return cast(ChatStream, stream)
