"""OpenAI-compatible ``/v1/chat/completions``, plain or streamed as server-sent events, over the LLM."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.gateway.channels import Backends
from services.gateway.errors import BadRequest, openai_error, openai_status_error, status_code
from services.gateway.http_body import json_body
from voice.llm.v1 import llm_pb2

_ROLES = {"user": llm_pb2.ROLE_USER, "assistant": llm_pb2.ROLE_ASSISTANT}
_SYSTEM_ROLES = ("system", "developer")
_FINISH = {llm_pb2.FINISH_REASON_LENGTH: "length"}


def router(backends: Backends) -> APIRouter:
    api = APIRouter()

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await json_body(request)
        config, messages = _conversation(body)
        model = str(body.get("model") or "")
        if not body.get("stream"):
            reply = await backends.llm.Chat(llm_pb2.ChatRequest(config=config, messages=messages))
            return JSONResponse(_completion(reply, model))
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        config.history.extend(messages[:-1])
        call = backends.llm.StreamingChat()
        try:
            await call.write(llm_pb2.StreamingChatRequest(config=config))
            await call.write(
                llm_pb2.StreamingChatRequest(user_turn=llm_pb2.UserTurn(text=messages[-1].content))
            )
            await call.done_writing()
            first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if (
            first is not grpc.aio.EOF
            and first.WhichOneof("response") == "turn_end"
            and first.turn_end.error.code
        ):
            # Refused before any text: a plain HTTP error, as OpenAI answers.
            call.cancel()
            return _turn_error(first.turn_end.error)
        return StreamingResponse(_events(call, first, model, usage), media_type="text/event-stream")

    return api


def _conversation(body: dict[str, Any]) -> tuple[llm_pb2.ChatConfig, list[llm_pb2.Message]]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("`messages` is missing or empty: give at least the user's message", "messages")
    system: list[str] = []
    messages: list[llm_pb2.Message] = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{index}] must be an object with role and content", "messages")
        role, content = message.get("role"), _text(message.get("content"), index)
        if role in _SYSTEM_ROLES:
            system.append(content)
        elif role in _ROLES:
            messages.append(llm_pb2.Message(role=_ROLES[role], content=content))
        else:
            raise BadRequest(
                f"messages[{index}] has role {role!r}; use system, developer, user or assistant", "messages"
            )
    if not messages or messages[-1].role != llm_pb2.ROLE_USER:
        raise BadRequest("the last message must be the user's", "messages")
    config = llm_pb2.ChatConfig(system_prompt="\n\n".join(system), model=str(body.get("model") or ""))
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float):
            raise BadRequest("`temperature` must be a number", "temperature")
        config.temperature = float(temperature)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise BadRequest("`max_tokens` must be a positive integer", "max_tokens")
        config.max_tokens = max_tokens
    return config, messages


def _text(content: object, index: int) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) == len(content):
            return "".join(str(p) for p in parts)
    raise BadRequest(f"messages[{index}].content must be text (a string or text parts)", "messages")


def _completion(reply: llm_pb2.ChatResponse, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or reply.engine,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": _FINISH.get(reply.finish_reason, "stop"),
            }
        ],
        "usage": _usage(reply.usage),
    }


def _usage(usage: llm_pb2.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _turn_error(error: llm_pb2.TurnError) -> JSONResponse:
    status, body = openai_status_error(status_code(error.code), error.message)
    return JSONResponse(body, status_code=status)


async def _events(
    call: grpc.aio.StreamStreamCall, first: Any, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def event(delta: dict[str, str], finish: str | None = None, **extra: Any) -> bytes:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    try:
        yield event({"role": "assistant", "content": ""})
        response = first
        while response is not grpc.aio.EOF:
            kind = response.WhichOneof("response")
            if kind == "delta":
                yield event({"content": response.delta.text})
            elif kind == "turn_end":
                end = response.turn_end
                if end.error.code:
                    error = openai_error(end.error.message, "api_error")
                    yield f"data: {json.dumps(error)}\n\n".encode()
                    return
                yield event({}, _FINISH.get(end.finish_reason, "stop"))
                if include_usage:
                    usage = {**base, "choices": [], "usage": _usage(end.usage)}
                    yield f"data: {json.dumps(usage)}\n\n".encode()
                break
            response = await call.read()
        yield b"data: [DONE]\n\n"
    finally:
        call.cancel()
