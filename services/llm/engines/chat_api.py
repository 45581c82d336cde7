"""Streaming chat over an OpenAI-style ``/v1/chat/completions`` API, shared by the
cerebras and openai engines: retries with backoff inside a deadline, cancel, usage, and
tool calls (streamed as they come, their arguments checked against the tool's schema at
the end: arguments that do not fit end the turn with an error)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable, VoiceError
from services.llm.engine import CallDelta, Completion, Finish, Message, OnDelta, Options, ToolCall
from services.llm.tools import api_choice, api_messages, api_tools, arguments_error, new_call_id

log = logging.getLogger(__name__)

# Status codes worth another try: timeout, conflict, rate limit, server errors.
RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class RetryPolicy:
    # Time from the request to the first token, all attempts and backoff included.
    deadline_s: float
    # One attempt's connect/read limit.
    request_timeout_s: float
    retries: int
    backoff_s: float


class ChatStream(Protocol):
    """What both SDKs' ``create(stream=True)`` return."""

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


# (messages, model, temperature, max_tokens, timeout_s, tools and tool_choice or nothing)
# -> an open stream of chunks
CreateStream = Callable[[list[dict[str, Any]], str, float, int, float, dict[str, Any]], ChatStream]


@dataclass(frozen=True)
class ApiErrors:
    """The SDK's error classes: ``status`` carries ``status_code``; ``transport`` are
    connection failures and timeouts, raised by the SDK or by its HTTP library mid-stream."""

    status: type[Exception]
    transport: tuple[type[Exception], ...]


class _Failed(Exception):
    def __init__(self, error: Exception, retryable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable


def _field(obj: Any, name: str) -> Any:
    # The cerebras SDK returns chunks without ``system_fingerprint`` as plain dicts.
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class ChatApiSession:
    """A conversation against a chat-completions API; the server keeps no state between turns."""

    def __init__(
        self, engine: str, default_model: str, create: CreateStream, errors: ApiErrors, policy: RetryPolicy
    ) -> None:
        self._engine = engine
        self._default_model = default_model
        self._create = create
        self._errors = errors
        self._policy = policy

    def generate(
        self, messages: Sequence[Message], options: Options, on_delta: OnDelta, cancel: threading.Event
    ) -> Completion:
        payload = api_messages(messages)
        model = options.model or self._default_model
        policy = self._policy
        started = time.monotonic()
        deadline = started + policy.deadline_s
        attempt = 0
        while True:
            attempt += 1
            timeout = min(policy.request_timeout_s, deadline - time.monotonic())
            try:
                return self._attempt(payload, model, options, timeout, on_delta, cancel)
            except _Failed as failed:
                if not failed.retryable:
                    raise self._fatal(failed.error, model) from failed.error
                delay = policy.backoff_s * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)
                elapsed = time.monotonic() - started
                if attempt > policy.retries or time.monotonic() + delay >= deadline - 0.05:
                    raise Unavailable(
                        f"{self._engine} is unavailable: {attempt} attempts in {elapsed:.1f}s "
                        f"(deadline {policy.deadline_s:g}s) failed; last error: {_describe(failed.error)}"
                    ) from failed.error
                log.info(
                    "retrying",
                    extra={"engine": self._engine, "attempt": attempt, "error": _describe(failed.error)},
                )
                if cancel.wait(delay):
                    return Completion("", Finish.CANCELLED, 0, 0, self._engine)

    def close(self) -> None:
        pass

    def _attempt(
        self,
        payload: list[dict[str, Any]],
        model: str,
        options: Options,
        timeout: float,
        on_delta: OnDelta,
        cancel: threading.Event,
    ) -> Completion:
        parts: list[str] = []
        calls = _Calls(on_delta)
        finish = Finish.STOP
        usage: Any = None
        tools: dict[str, Any] = {}
        if options.tools:
            tools = {"tools": api_tools(options.tools), "tool_choice": api_choice(options.tool_choice)}
        try:
            stream = self._create(payload, model, options.temperature, options.max_tokens, timeout, tools)
            try:
                for chunk in stream:
                    if cancel.is_set():
                        finish = Finish.CANCELLED
                        break
                    usage = _field(chunk, "usage") or usage
                    for choice in _field(chunk, "choices") or ():
                        delta = _field(choice, "delta")
                        text = _field(delta, "content")
                        if text:
                            parts.append(text)
                            on_delta(text)
                        if options.tools and options.tool_choice != "none":
                            for piece in _field(delta, "tool_calls") or ():
                                calls.add(piece)
                        if _field(choice, "finish_reason") == "length":
                            finish = Finish.LENGTH
            finally:
                # Closing the response stops the server's generation too.
                stream.close()
        except (self._errors.status, *self._errors.transport) as exc:
            if parts or calls.made:
                raise Unavailable(
                    f"{self._engine} failed mid-reply after {len(parts)} chunks: {_describe(exc)}"
                ) from exc
            status = getattr(exc, "status_code", None)
            retryable = status is None or status in RETRYABLE_STATUS or status >= 500
            raise _Failed(exc, retryable) from exc
        prompt_tokens = int(_field(usage, "prompt_tokens") or 0) if usage else 0
        completion_tokens = int(_field(usage, "completion_tokens") or 0) if usage else len(parts)
        if finish is Finish.CANCELLED:
            completion_tokens = len(parts)
        made: tuple[ToolCall, ...] = ()
        if finish is not Finish.CANCELLED and calls.made:
            made = calls.checked(options)
            finish = Finish.TOOL_CALLS
        return Completion("".join(parts), finish, prompt_tokens, completion_tokens, self._engine, made)

    def _fatal(self, exc: Exception, model: str) -> VoiceError:
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            return FailedPrecondition(f"{self._engine} refused the API key ({status}); check the key setting")
        if status == 404:
            return InvalidArgument(f"{self._engine} does not know model {model!r} (404); check LLM_MODEL")
        return InvalidArgument(f"{self._engine} rejected the request: {_describe(exc)}")


class _Calls:
    """The tool calls of a streamed reply, put together from their pieces (the API's
    ``index`` tells them apart) and passed on as they come."""

    def __init__(self, on_delta: OnDelta) -> None:
        self._on_delta = on_delta
        self._order: dict[int, int] = {}  # the API's index -> the call's place
        self._names: list[str] = []
        self._ids: list[str] = []
        self._arguments: list[list[str]] = []
        self._unsent: dict[int, list[str]] = {}  # argument pieces that came before the name

    @property
    def made(self) -> bool:
        return bool(self._order)

    def add(self, piece: Any) -> None:
        index = int(_field(piece, "index") or 0)
        function = _field(piece, "function")
        name = _field(function, "name") or ""
        arguments = _field(function, "arguments") or ""
        if index not in self._order:
            self._order[index] = len(self._ids)
            self._ids.append(new_call_id())
            self._names.append("")
            self._arguments.append([])
        place = self._order[index]
        if name and not self._names[place]:
            self._names[place] = name
            self._on_delta(CallDelta(place, self._ids[place], name))
            for held in self._unsent.pop(place, []):
                self._on_delta(CallDelta(place, arguments=held))
        if arguments:
            self._arguments[place].append(arguments)
            if self._names[place]:
                self._on_delta(CallDelta(place, arguments=arguments))
            else:
                self._unsent.setdefault(place, []).append(arguments)

    def checked(self, options: Options) -> tuple[ToolCall, ...]:
        """The calls, each naming a tool and with arguments valid for its schema; VoiceError if not."""
        tools = {tool.name: tool for tool in options.tools}
        calls = []
        for call_id, name, pieces in zip(self._ids, self._names, self._arguments, strict=True):
            arguments = "".join(pieces) or "{}"
            if name not in tools:
                raise VoiceError(
                    f"the model called {name!r}, which is not one of its tools ({', '.join(tools)})"
                )
            if error := arguments_error(tools[name], arguments):
                raise VoiceError(f"the model's call is unusable: {error}")
            calls.append(ToolCall(call_id, name, arguments))
        return tuple(calls)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc) or type(exc).__name__
    if len(text) > 200:
        text = text[:200] + "..."
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"
