"""``LlmService``: translates protobuf <-> ``Conversation`` and the engine."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import grpc

from services.common.errors import InvalidArgument, VoiceError, status_of, stream_errors, unary_errors
from services.llm.config import LlmSettings
from services.llm.conversation import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    Conversation,
    TurnResult,
)
from services.llm.engine import CallDelta, Engine, FallbackEngine, Finish, Message, Options, ToolCall
from services.llm.spans import chat_span
from services.llm.tools import check_tools, parse_tool
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = llm_pb2.DESCRIPTOR.services_by_name["LlmService"].full_name
MAX_TEMPERATURE = 2.0

_FINISH = {
    Finish.STOP: llm_pb2.FINISH_REASON_STOP,
    Finish.LENGTH: llm_pb2.FINISH_REASON_LENGTH,
    Finish.CANCELLED: llm_pb2.FINISH_REASON_CANCELLED,
    Finish.TOOL_CALLS: llm_pb2.FINISH_REASON_TOOL_CALLS,
}
_ROLES = {
    llm_pb2.ROLE_SYSTEM: "system",
    llm_pb2.ROLE_USER: "user",
    llm_pb2.ROLE_ASSISTANT: "assistant",
    llm_pb2.ROLE_TOOL: "tool",
}

Response = llm_pb2.StreamingChatResponse
# What the response loop receives: a response, the error that ends the stream, or the end.
_Out = Response | BaseException | None


class LlmServicer(llm_pb2_grpc.LlmServiceServicer):
    def __init__(self, engine: Engine, settings: LlmSettings) -> None:
        self.engine = engine
        self.settings = settings

    @stream_errors
    async def StreamingChat(
        self, request_iterator: AsyncIterator[llm_pb2.StreamingChatRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Response]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        if first.WhichOneof("request") != "config":
            raise InvalidArgument("the first message of a stream must be its config")
        conversation = await self._open(first.config, ())
        out: asyncio.Queue[_Out] = asyncio.Queue()
        if first.config.HasField("tools"):
            _refuse(out, lambda: _set_tools(conversation, first.config.tools))
        # Cancel events of the turns received and not yet finished, with their turn ids.
        pending: dict[threading.Event, int] = {}
        reader = asyncio.create_task(self._read(requests, conversation, pending, out))
        try:
            while (item := await out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for event in pending:
                event.set()
            reader.cancel()
            conversation.close()

    @unary_errors
    async def Chat(
        self, request: llm_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.ChatResponse:
        messages = [_message(m) for m in request.messages]
        if not messages or messages[-1].role not in ("user", "tool"):
            raise InvalidArgument("messages must end with the user's message or a tool's result")
        last = messages[-1]
        conversation = await self._open(request.config, messages[:-1] if last.role == "user" else messages)
        try:
            if request.config.HasField("tools"):
                _set_tools(conversation, request.config.tools)
            if last.role == "user":
                result = await conversation.reply(last.content, lambda _: None, threading.Event())
            else:
                result = await conversation.resume(lambda _: None, threading.Event())
        finally:
            conversation.close()
        end = _turn_end(result)
        return llm_pb2.ChatResponse(
            text=end.text,
            finish_reason=end.finish_reason,
            usage=end.usage,
            timings=end.timings,
            engine=end.engine,
            tool_calls=end.tool_calls,
        )

    async def GetInfo(
        self, request: llm_pb2.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.GetInfoResponse:
        fallback = self.engine.fallback.name if isinstance(self.engine, FallbackEngine) else ""
        return llm_pb2.GetInfoResponse(
            engine=self.engine.name,
            model=self.engine.model,
            context_size=self.engine.context_tokens,
            fallback_engine=fallback,
            notice=self.settings.notice,
        )

    async def _open(self, config: llm_pb2.ChatConfig, earlier: Sequence[Message]) -> Conversation:
        temperature = config.temperature if config.HasField("temperature") else DEFAULT_TEMPERATURE
        if not 0 <= temperature <= MAX_TEMPERATURE:
            raise InvalidArgument(f"temperature {temperature:g} is outside 0..{MAX_TEMPERATURE:g}")
        options = Options(config.model, temperature, config.max_tokens or DEFAULT_MAX_TOKENS)
        history = [*(_message(m) for m in config.history), *earlier]
        session = await asyncio.to_thread(self.engine.open_session)
        return Conversation(
            session,
            config.system_prompt,
            options,
            history,
            max_turn_chars=self.settings.max_turn_chars,
            max_history_chars=self.settings.max_history_chars,
        )

    async def _read(
        self,
        requests: AsyncIterator[llm_pb2.StreamingChatRequest],
        conversation: Conversation,
        pending: dict[threading.Event, int],
        out: asyncio.Queue[_Out],
    ) -> None:
        """Read requests while turns run: cancels act at once; the others in order."""
        commands: asyncio.Queue[tuple[llm_pb2.StreamingChatRequest, threading.Event] | None] = asyncio.Queue()
        owners: dict[str, int] = {}  # call id -> turn_id of the turn that made the call
        worker = asyncio.create_task(self._work(conversation, commands, pending, owners, out))
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "config":
                    raise InvalidArgument("config may be sent only once, as the first message of a stream")
                if kind in ("cancel", "retract"):
                    which = request.cancel.turn_id if kind == "cancel" else request.retract.turn_id
                    for event, turn_id in pending.items():
                        if which in (0, turn_id):
                            event.set()
                if kind in ("user_turn", "truncate", "retract", "update", "tool_result"):
                    event = threading.Event()
                    if kind == "user_turn":
                        pending[event] = request.user_turn.turn_id
                    elif kind == "tool_result":
                        # The turn the result may go on with (a Cancel of it stops that).
                        pending[event] = owners.get(request.tool_result.call_id, 0)
                    commands.put_nowait((request, event))
                elif kind != "cancel":
                    raise InvalidArgument(
                        "a request must set config, user_turn, cancel, truncate, retract, "
                        "update or tool_result"
                    )
            commands.put_nowait(None)
            await worker
            out.put_nowait(None)
        except Exception as exc:
            out.put_nowait(exc)
        finally:
            worker.cancel()

    async def _work(
        self,
        conversation: Conversation,
        commands: asyncio.Queue[tuple[llm_pb2.StreamingChatRequest, threading.Event] | None],
        pending: dict[threading.Event, int],
        owners: dict[str, int],
        out: asyncio.Queue[_Out],
    ) -> None:
        loop = asyncio.get_running_loop()
        last_id = 0  # turn_id of the last user turn
        while (command := await commands.get()) is not None:
            request, cancel = command
            kind = request.WhichOneof("request")
            if kind in ("truncate", "retract"):
                which = request.truncate.turn_id if kind == "truncate" else request.retract.turn_id
                if which not in (0, last_id):
                    log.warning("%s of turn %d, but the last turn is %d; ignored", kind, which, last_id)
                elif kind == "truncate" and not conversation.truncate(request.truncate.heard_text):
                    log.warning("truncate before any reply; ignored")
                elif kind == "retract" and not conversation.retract():
                    log.warning("retract before any turn; ignored")
                continue
            if kind in ("update", "tool_result"):
                refused = _refuse(out, functools.partial(_apply, conversation, request))
                if kind == "update" or refused or conversation.awaiting:
                    pending.pop(cancel, None)
                    continue
                # Every call has its result: the same turn goes on.
                index = conversation.turns
            else:
                index, last_id = conversation.next_index, request.user_turn.turn_id

            def send(piece: str | CallDelta, index: int = index, turn_id: int = last_id) -> None:
                if isinstance(piece, CallDelta):
                    call = llm_pb2.ToolCallDelta(
                        index=piece.index,
                        id=piece.id,
                        name=piece.name,
                        arguments_delta=piece.arguments,
                        turn_id=turn_id,
                    )
                    delta = Response(tool_call=call)
                else:
                    delta = Response(delta=llm_pb2.TextDelta(text=piece, turn_index=index, turn_id=turn_id))
                loop.call_soon_threadsafe(out.put_nowait, delta)

            try:
                model = self.engine.model
                with chat_span(request.traceparent, self.engine.name, conversation.options, model) as done:
                    if kind == "user_turn":
                        result = await conversation.reply(request.user_turn.text, send, cancel)
                    else:
                        result = await conversation.resume(send, cancel)
                    done(result)
                owners.update((call.id, last_id) for call in result.completion.tool_calls)
                end = _turn_end(result)
            except Exception as exc:
                if not isinstance(exc, VoiceError):
                    log.exception("turn failed")
                end = self._error_end(index, exc)
            finally:
                pending.pop(cancel, None)
            end.turn_id = last_id
            out.put_nowait(Response(turn_end=end))

    def _error_end(self, index: int, exc: Exception) -> llm_pb2.TurnEnd:
        code, message = status_of(exc)
        return llm_pb2.TurnEnd(
            turn_index=index,
            finish_reason=llm_pb2.FINISH_REASON_ERROR,
            error=llm_pb2.TurnError(
                code=code.value[0], message=message, retryable=isinstance(exc, VoiceError) and exc.retryable
            ),
            engine=self.engine.name,
        )


def _message(message: llm_pb2.Message) -> Message:
    if message.role not in _ROLES:
        raise InvalidArgument(
            "each message needs a role: ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL"
        )
    calls = tuple(ToolCall(c.id, c.name, c.arguments_json) for c in message.tool_calls)
    return Message(_ROLES[message.role], message.content, calls, message.tool_call_id)


def _set_tools(conversation: Conversation, tool_set: llm_pb2.ToolSet) -> None:
    """Check ``tool_set`` and give it to the conversation; a bad one leaves the tools as they were."""
    tools = [parse_tool(t.name, t.description, t.parameters_json) for t in tool_set.tools]
    choice = check_tools(tools, tool_set.tool_choice)
    conversation.update(tools=tools, choice=choice)


def _apply(conversation: Conversation, request: llm_pb2.StreamingChatRequest) -> None:
    """A ConfigUpdate or a ToolResult."""
    if request.WhichOneof("request") == "tool_result":
        result = request.tool_result
        conversation.add_result(result.call_id, result.output, result.is_error)
        return
    update = request.update
    if update.HasField("tools"):
        _set_tools(conversation, update.tools)
    if update.HasField("system_prompt"):
        conversation.update(system_prompt=update.system_prompt)


def _refuse(out: asyncio.Queue[_Out], action: Callable[[], None]) -> bool:
    """Run ``action``; a request it refuses is answered with a RequestError and the stream goes on."""
    try:
        action()
    except InvalidArgument as exc:
        log.info("request refused", extra={"error": str(exc)})
        code, message = status_of(exc)
        out.put_nowait(Response(error=llm_pb2.RequestError(code=code.value[0], message=message)))
        return True
    return False


def _turn_end(result: TurnResult) -> llm_pb2.TurnEnd:
    completion, timings = result.completion, result.timings
    return llm_pb2.TurnEnd(
        turn_index=result.index,
        finish_reason=_FINISH[completion.finish],
        usage=llm_pb2.Usage(
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens
        ),
        timings=llm_pb2.Timings(
            time_to_first_token_ms=timings.time_to_first_token_ms,
            total_ms=timings.total_ms,
            tokens_per_second=timings.tokens_per_second,
        ),
        text=completion.text,
        engine=completion.engine,
        tool_calls=[
            llm_pb2.ToolCall(id=c.id, name=c.name, arguments_json=c.arguments) for c in completion.tool_calls
        ],
    )
