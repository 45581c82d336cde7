"""The ``Engine`` protocol every chat backend implements, and ``create_engine``.

An engine is the loaded, shared backend; a ``Session`` is one conversation's
state on it (for the local engine, a llama.cpp context whose KV cache holds the
conversation so far). ``Session.generate`` blocks and runs in a worker thread.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from services.common.errors import ConfigError, VoiceError

if TYPE_CHECKING:
    from services.llm.config import LlmSettings

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'voice-agent[llm]'"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as text


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user", "assistant" or "tool"
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message's calls
    tool_call_id: str = ""  # a tool message: the call it answers


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments, an object schema


@dataclass(frozen=True)
class Options:
    model: str  # empty: the engine's default
    temperature: float
    max_tokens: int
    tools: tuple[Tool, ...] = ()
    # "auto", "none", "required" or a tool's name
    tool_choice: str = "auto"


class Finish(Enum):
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    TOOL_CALLS = "tool_calls"


@dataclass(frozen=True)
class Completion:
    """How a generation ended; the text was also streamed through ``on_delta``."""

    text: str
    finish: Finish
    prompt_tokens: int
    completion_tokens: int
    engine: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class CallDelta:
    """A piece of a tool call: the first piece of a call has its id and name, the
    following ones more of its arguments' JSON text."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


# Text of the reply, or a piece of a tool call.
OnDelta = Callable[[str | CallDelta], None]


class Session(Protocol):
    def generate(
        self, messages: Sequence[Message], options: Options, on_delta: OnDelta, cancel: threading.Event
    ) -> Completion:
        """Stream a reply to ``messages`` into ``on_delta``; stop producing tokens as soon as
        ``cancel`` is set. Blocking: call it from a worker thread."""
        ...

    def close(self) -> None:
        """Release the session's resources (safe while a generation is still stopping)."""
        ...


class Engine(Protocol):
    name: str
    model: str
    context_tokens: int

    def load(self) -> None:
        """Load and warm the backend; called once before serving."""
        ...

    def open_session(self) -> Session: ...


# name -> (module, class)
_BACKENDS = {
    "cerebras": ("services.llm.engines.cerebras", "CerebrasEngine"),
    "openai": ("services.llm.engines.openai", "OpenAiEngine"),
    "local": ("services.llm.engines.local", "LocalEngine"),
}


def _backend(name: str, settings: LlmSettings) -> Engine:
    if name not in _BACKENDS:
        raise ConfigError(f"unknown engine {name!r}; set LLM_ENGINE to one of {', '.join(_BACKENDS)}")
    module_name, class_name = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("services."):
            raise
        raise ConfigError(f"the {name} engine needs {exc.name!r}; install it with: {INSTALL_HINT}") from exc
    engine: Engine = getattr(module, class_name)(settings)
    return engine


def create_engine(settings: LlmSettings) -> Engine:
    """The configured engine, wrapped with the fallback engine when one is set."""
    primary = _backend(settings.engine_name, settings)
    if not settings.fallback or settings.fallback == primary.name:
        return primary
    return FallbackEngine(primary, _backend(settings.fallback, settings))


class FallbackEngine:
    """Answers from ``fallback`` when ``primary`` fails with a retryable error before its first token."""

    def __init__(self, primary: Engine, fallback: Engine) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = primary.name
        self.model = primary.model
        self.context_tokens = primary.context_tokens

    def load(self) -> None:
        self.primary.load()
        self.fallback.load()

    def open_session(self) -> Session:
        return _FallbackSession(self.primary.open_session(), self.fallback)


class _FallbackSession:
    def __init__(self, primary: Session, fallback: Engine) -> None:
        self._primary = primary
        self._fallback_engine = fallback
        self._fallback: Session | None = None

    def generate(
        self, messages: Sequence[Message], options: Options, on_delta: OnDelta, cancel: threading.Event
    ) -> Completion:
        started = False

        def forward(text: str | CallDelta) -> None:
            nonlocal started
            started = True
            on_delta(text)

        try:
            return self._primary.generate(messages, options, forward, cancel)
        except VoiceError as exc:
            if started or not exc.retryable:
                raise
            log.warning("primary engine unavailable; answering from the fallback", extra={"error": str(exc)})
        if self._fallback is None:
            self._fallback = self._fallback_engine.open_session()
        # The cloud model's name means nothing to the fallback: use its default.
        return self._fallback.generate(messages, replace(options, model=""), on_delta, cancel)

    def close(self) -> None:
        self._primary.close()
        if self._fallback is not None:
            self._fallback.close()
