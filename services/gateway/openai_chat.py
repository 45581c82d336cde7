"""OpenAI-compatible ``/v1/chat/completions``, plain or streamed as server-sent events, over the LLM."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.gateway.channels import Backends
from services.gateway.errors import BadRequest, openai_error, openai_status_error, status_code
from services.gateway.functions import FunctionError, functions, tool_choice
from services.gateway.http_body import json_body
from voice.llm.v1 import llm_pb2

_ROLES = {"user": llm_pb2.ROLE_USER, "assistant": llm_pb2.ROLE_ASSISTANT, "tool": llm_pb2.ROLE_TOOL}
_SYSTEM_ROLES = ("system", "developer")
_FINISH = {llm_pb2.FINISH_REASON_LENGTH: "length", llm_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls"}


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
        if messages[-1].role == llm_pb2.ROLE_TOOL:
            # The turn goes on from the tools' results: the history up to the calls, then the
            # results, the last of which the stream answers.
            calls = max((i for i, m in enumerate(messages) if m.role == llm_pb2.ROLE_ASSISTANT), default=-1)
            history, asked = messages[: calls + 1], [_result(m) for m in messages[calls + 1 :]]
        else:
            history, asked = messages[:-1], [_user_turn(messages[-1])]
        config.history.extend(history)
        call = backends.llm.StreamingChat()
        try:
            await call.write(llm_pb2.StreamingChatRequest(config=config))
            for item in asked:
                await call.write(item)
            await call.done_writing()
            first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if first is not grpc.aio.EOF and (refused := _refusal(first)) is not None:
            # Refused before any text (a turn that failed, tools with a bad schema): a plain HTTP
            # error, as OpenAI answers.
            call.cancel()
            return _turn_error(refused)
        return StreamingResponse(_events(_read(call, first), model, usage), media_type="text/event-stream")

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
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            system.append(_text(message.get("content"), index))
        elif role in _ROLES:
            messages.append(_message(message, index))
        else:
            raise BadRequest(
                f"messages[{index}] has role {role!r}; use system, developer, user, assistant or tool",
                "messages",
            )
    if not messages or messages[-1].role not in (llm_pb2.ROLE_USER, llm_pb2.ROLE_TOOL):
        raise BadRequest(
            "the last message must be the user's (or the results of the tools called)", "messages"
        )
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
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None and choice is not None:
        raise BadRequest(
            "`tool_choice` is given without `tools`: declare the functions in `tools`", "tool_choice"
        )
    if tools is not None:
        try:
            declared = functions(tools, "tools", nested=True)
            config.tools.tool_choice = tool_choice(choice, [f.name for f in declared], "tool_choice")
        except FunctionError as exc:
            raise BadRequest(str(exc), exc.param) from exc
        config.tools.tools.extend(
            llm_pb2.Tool(name=f.name, description=f.description, parameters_json=f.parameters_json)
            for f in declared
        )
    return config, messages


def _message(message: dict[str, Any], index: int) -> llm_pb2.Message:
    """A user, assistant or tool message: an assistant's may carry calls instead of text."""
    role = message["role"]
    calls = message.get("tool_calls") if role == "assistant" else None
    content = message.get("content")
    text = "" if content is None and calls else _text(content, index)
    out = llm_pb2.Message(role=_ROLES[role], content=text)
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(f"messages[{index}] is a tool result without its `tool_call_id`", "messages")
        out.tool_call_id = call_id
    for number, call in enumerate(calls or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str):
            raise BadRequest(
                f"messages[{index}].tool_calls[{number}] must have an `id` and a `function` "
                "with its name and arguments",
                "messages",
            )
        out.tool_calls.add(
            id=call["id"],
            name=str(function.get("name") or ""),
            arguments_json=str(function.get("arguments") or "{}"),
        )
    return out


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
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["content"] = reply.text or None
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or reply.engine,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _FINISH.get(reply.finish_reason, "stop")}
        ],
        "usage": _usage(reply.usage),
    }


def _usage(usage: llm_pb2.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _refusal(response: llm_pb2.StreamingChatResponse) -> llm_pb2.TurnError | llm_pb2.RequestError | None:
    """The error of a response that refuses the request or fails the turn, if it is one."""
    kind = response.WhichOneof("response")
    if kind == "error":
        return response.error
    if kind == "turn_end" and response.turn_end.error.code:
        return response.turn_end.error
    return None


def _turn_error(error: llm_pb2.TurnError | llm_pb2.RequestError) -> JSONResponse:
    status, body = openai_status_error(status_code(error.code), error.message)
    return JSONResponse(body, status_code=status)


async def _read(call: grpc.aio.StreamStreamCall, first: Any) -> AsyncGenerator[llm_pb2.StreamingChatResponse]:
    try:
        response = first
        while response is not grpc.aio.EOF:
            yield response
            response = await call.read()
    finally:
        call.cancel()


def _user_turn(message: llm_pb2.Message) -> llm_pb2.StreamingChatRequest:
    return llm_pb2.StreamingChatRequest(user_turn=llm_pb2.UserTurn(text=message.content))


def _result(message: llm_pb2.Message) -> llm_pb2.StreamingChatRequest:
    result = llm_pb2.ToolResult(call_id=message.tool_call_id, output=message.content)
    return llm_pb2.StreamingChatRequest(tool_result=result)


async def _events(
    responses: AsyncGenerator[llm_pb2.StreamingChatResponse], model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    try:
        yield event({"role": "assistant", "content": ""})
        async for response in responses:
            kind = response.WhichOneof("response")
            if kind == "delta":
                yield event({"content": response.delta.text})
            elif kind == "tool_call":
                yield event({"tool_calls": [_call_piece(response.tool_call)]})
            elif (refused := _refusal(response)) is not None:
                error = openai_error(refused.message, "api_error")
                yield f"data: {json.dumps(error)}\n\n".encode()
                return
            elif kind == "turn_end":
                end = response.turn_end
                yield event({}, _FINISH.get(end.finish_reason, "stop"))
                if include_usage:
                    usage = {**base, "choices": [], "usage": _usage(end.usage)}
                    yield f"data: {json.dumps(usage)}\n\n".encode()
                break
        yield b"data: [DONE]\n\n"
    finally:
        await responses.aclose()


def _call_piece(piece: llm_pb2.ToolCallDelta) -> dict[str, Any]:
    """A streamed piece of a tool call: the first names the call and its function."""
    function: dict[str, str] = {"arguments": piece.arguments_delta}
    out: dict[str, Any] = {"index": piece.index, "function": function}
    if piece.id:
        out.update(id=piece.id, type="function")
    if piece.name:
        function["name"] = piece.name
    return out
