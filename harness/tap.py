"""What each service received and delivered, recorded by a proxy in front of it.

A ``Tap`` is a gRPC server on 127.0.0.1 and a free port that passes every call, unary
or streaming, byte for byte to the real service and keeps each message both ways. A
test points the conversation's service addresses at taps (``tapped``), so what it
checks (the audio synthesized for a turn, the requests the chat service received) is
the services' account of the conversation, not the account of the code under test.
Health checks and every other method pass through as they are; a failed upstream call
fails the client's with the same status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message as Proto

from conversation.settings import ConversationSettings
from voice.llm.v1 import llm_pb2
from voice.stt.v1 import stt_pb2
from voice.tts.v1 import tts_pb2

P = TypeVar("P", bound=Proto)
S = TypeVar("S", bound=ConversationSettings)

# Metadata grpc sets itself on a call; forwarding it would be refused or duplicated.
_OWN_METADATA = ("user-agent", "te", "content-type")


def _method(module: Any, service: str, rpc: str) -> str:
    return f"/{module.DESCRIPTOR.services_by_name[service].full_name}/{rpc}"


STREAMING_RECOGNIZE = _method(stt_pb2, "SttService", "StreamingRecognize")
STREAMING_CHAT = _method(llm_pb2, "LlmService", "StreamingChat")
STREAMING_SYNTHESIZE = _method(tts_pb2, "TtsService", "StreamingSynthesize")


@dataclass(frozen=True)
class Message:
    """One message the tap passed on."""

    call: int  # the call it belongs to, counted from 0 in the order the calls began
    method: str  # "/package.Service/Method"
    from_client: bool  # a request (else a response)
    at_s: float  # time.monotonic() when the tap passed it on
    data: bytes  # as serialized on the wire


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, tap: Tap) -> None:
        self._tap = tap

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        # Unary or streaming is the same on the wire: a stream of one message each way.
        return grpc.stream_stream_rpc_method_handler(self._tap._forward(handler_call_details.method))


class Tap:
    """A recording proxy for the service at ``target`` (``host:port``, plaintext)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.address = ""  # 127.0.0.1:port, once started
        self.messages: list[Message] = []
        self._calls = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((_Forward(self),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _forward(self, method: str) -> Any:
        async def forward(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            call_index, self._calls = self._calls, self._calls + 1
            metadata = tuple(
                (key, value)
                for key, value in context.invocation_metadata() or ()
                if not key.startswith((":", "grpc-")) and key not in _OWN_METADATA
            )

            async def passed_on() -> AsyncIterator[bytes]:
                async for request in requests:
                    self.messages.append(Message(call_index, method, True, time.monotonic(), request))
                    yield request

            # A channel per call: a restarted service is reached at the next call, with no backoff.
            async with grpc.aio.insecure_channel(self.target) as channel:
                call = channel.stream_stream(method)(
                    passed_on(), metadata=metadata, timeout=context.time_remaining()
                )
                try:
                    async for response in call:
                        await self._hold(method, response)
                        self.messages.append(Message(call_index, method, False, time.monotonic(), response))
                        yield response
                except grpc.aio.AioRpcError as err:
                    await context.abort(err.code(), err.details() or "")
                finally:
                    call.cancel()

        return forward

    async def _hold(self, method: str, response: bytes) -> None:
        """Before a response is passed on: what a tap that paces the service waits for."""

    def _decoded(self, method: str, from_client: bool, kind: type[P]) -> Iterator[tuple[Message, P]]:
        for message in list(self.messages):
            if message.method == method and message.from_client == from_client:
                yield message, kind.FromString(message.data)

    def received(self, method: str, kind: type[P]) -> list[P]:
        """The requests of every call of ``method``, in the order they reached the service."""
        return [request for _, request in self._decoded(method, True, kind)]

    def delivered(self, method: str, kind: type[P]) -> list[P]:
        """The responses of every call of ``method``, in the order the service sent them."""
        return [response for _, response in self._decoded(method, False, kind)]


class SttTap(Tap):
    """In front of the speech recognition service: the words it delivered."""

    def results(self) -> list[stt_pb2.SpeechRecognitionResult]:
        """Every result (interim and final) of every stream, in the order delivered."""
        responses = self.delivered(STREAMING_RECOGNIZE, stt_pb2.StreamingRecognizeResponse)
        return [result for response in responses for result in response.results]


@dataclass(frozen=True)
class Spoken:
    """One piece of a reply's text, as the speech service synthesized it."""

    text: str
    samples: np.ndarray  # int16, at the stream's rate


class TtsTap(Tap):
    """In front of the speech synthesis service: the audio it delivered, per turn and piece.

    With ``lead_s``, each turn's audio is passed on no faster than it plays, from its first
    chunk on, at most ``lead_s`` ahead: as from a service that synthesizes in real time, so the
    reply is still arriving while it plays (and while it is paused).
    """

    def __init__(self, target: str, lead_s: float | None = None) -> None:
        super().__init__(target)
        self._lead_s = lead_s
        self._paced: dict[int, tuple[float, float]] = {}  # turn id: (first chunk at, seconds passed on)

    async def _hold(self, method: str, response: bytes) -> None:
        if self._lead_s is None or method != STREAMING_SYNTHESIZE:
            return
        audio = tts_pb2.StreamingSynthesizeResponse.FromString(response).audio
        if not (audio.audio_content and audio.sample_rate_hz):
            return
        first_at, passed_s = self._paced.setdefault(audio.turn_id, (time.monotonic(), 0.0))
        await asyncio.sleep(first_at + passed_s - self._lead_s - time.monotonic())
        duration_s = len(audio.audio_content) / 2 / audio.sample_rate_hz
        self._paced[audio.turn_id] = (first_at, passed_s + duration_s)

    def pieces(self, turn_id: int) -> list[Spoken]:
        """Turn ``turn_id``'s pieces in the order delivered, over every stream (a restart too);
        a piece begins at a chunk that names its text."""
        texts: list[str] = []
        audio: list[list[bytes]] = []
        for response in self.delivered(STREAMING_SYNTHESIZE, tts_pb2.StreamingSynthesizeResponse):
            if not response.HasField("audio") or response.audio.turn_id != turn_id:
                continue
            if response.audio.text or not texts:
                texts.append(response.audio.text)
                audio.append([])
            audio[-1].append(response.audio.audio_content)
        return [
            Spoken(text, np.frombuffer(b"".join(chunks), "<i2"))
            for text, chunks in zip(texts, audio, strict=True)
        ]

    def audio(self, turn_id: int) -> np.ndarray:
        """All the audio delivered for turn ``turn_id``, in order (int16)."""
        pieces = self.pieces(turn_id)
        return np.concatenate([p.samples for p in pieces]) if pieces else np.zeros(0, np.int16)

    def delivered_at(self, turn_id: int, sample: int) -> float:
        """When (time.monotonic()) the service delivered sample ``sample`` of turn ``turn_id``'s audio."""
        samples = 0
        for message, response in self._decoded(
            STREAMING_SYNTHESIZE, False, tts_pb2.StreamingSynthesizeResponse
        ):
            if response.HasField("audio") and response.audio.turn_id == turn_id:
                samples += len(response.audio.audio_content) // 2
                if samples > sample:
                    return message.at_s
        raise AssertionError(f"turn {turn_id} has only {samples} samples of audio, not {sample + 1}")

    def synthesized_at(self, turn_id: int) -> float | None:
        """When (time.monotonic()) the service said it had synthesized all of turn ``turn_id``'s
        text (its first SynthesisDone for the turn that ends no cancel); None: it never did."""
        for message, response in self._decoded(
            STREAMING_SYNTHESIZE, False, tts_pb2.StreamingSynthesizeResponse
        ):
            if response.HasField("done") and response.done.turn_id == turn_id and not response.done.cancelled:
                return message.at_s
        return None


class LlmTap(Tap):
    """In front of the chat service: the requests it received and the replies it delivered."""

    def requests(self) -> list[llm_pb2.StreamingChatRequest]:
        return self.received(STREAMING_CHAT, llm_pb2.StreamingChatRequest)

    def user_turns(self) -> list[llm_pb2.UserTurn]:
        """Every user turn asked, in order (a turn asked again on a new stream: again)."""
        return [r.user_turn for r in self.requests() if r.HasField("user_turn")]

    def turn_id(self, user_text: str) -> int:
        """The id of the last user turn asked with the words ``user_text``."""
        ids = [turn.turn_id for turn in self.user_turns() if turn.text == user_text]
        assert ids, f"the chat service was never asked {user_text!r}: {self.user_turns()}"
        return ids[-1]

    def retracted(self) -> list[int]:
        return [r.retract.turn_id for r in self.requests() if r.HasField("retract")]

    def truncated(self) -> list[llm_pb2.Truncate]:
        return [r.truncate for r in self.requests() if r.HasField("truncate")]

    def cancelled(self) -> list[int]:
        return [r.cancel.turn_id for r in self.requests() if r.HasField("cancel")]

    def reply(self, turn_id: int) -> str:
        """The text the service streamed for turn ``turn_id`` (its deltas, over every stream)."""
        responses = self.delivered(STREAMING_CHAT, llm_pb2.StreamingChatResponse)
        return "".join(r.delta.text for r in responses if r.HasField("delta") and r.delta.turn_id == turn_id)

    def history(self) -> list[llm_pb2.Message]:
        """The conversation as the service keeps it at the end of the last stream, from what that
        stream carried and the rules of ``llm.proto``: the config's history; each user turn with
        its reply as generated (unless the turn failed); a Truncate replaces the last reply with
        what was heard, a Retract withdraws the last user turn and its reply (each only when it
        names the last turn, or none)."""
        calls = {m.call for m in self.messages if m.method == STREAMING_CHAT}
        if not calls:
            return []
        last = max(calls)
        requests = [
            llm_pb2.StreamingChatRequest.FromString(m.data)
            for m in self.messages
            if m.call == last and m.from_client
        ]
        ends: dict[int, llm_pb2.TurnEnd] = {}
        for message in self.messages:
            if message.call == last and not message.from_client:
                response = llm_pb2.StreamingChatResponse.FromString(message.data)
                if response.HasField("turn_end"):
                    ends[response.turn_end.turn_id] = response.turn_end
        history: list[llm_pb2.Message] = []
        last_id = 0
        for request in requests:
            kind = request.WhichOneof("request")
            if kind == "config":
                history = list(request.config.history)
            elif kind == "user_turn":
                last_id = request.user_turn.turn_id
                end = ends.get(last_id)
                if end is not None and end.finish_reason != llm_pb2.FINISH_REASON_ERROR:
                    history += [
                        llm_pb2.Message(role=llm_pb2.ROLE_USER, content=request.user_turn.text.strip()),
                        llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=end.text),
                    ]
            elif kind == "truncate" and request.truncate.turn_id in (0, last_id):
                for i in reversed(range(len(history))):
                    if history[i].role == llm_pb2.ROLE_ASSISTANT:
                        history[i] = llm_pb2.Message(
                            role=llm_pb2.ROLE_ASSISTANT, content=request.truncate.heard_text
                        )
                        break
            elif kind == "retract" and request.retract.turn_id in (0, last_id):
                for i in reversed(range(len(history))):
                    if history[i].role == llm_pb2.ROLE_USER:
                        del history[i:]
                        break
        return history


@dataclass(frozen=True)
class Taps:
    stt: SttTap
    llm: LlmTap
    tts: TtsTap


@asynccontextmanager
async def tapped(settings: S, tts_lead_s: float | None = None) -> AsyncIterator[tuple[S, Taps]]:
    """Taps in front of ``settings``' three services (the speech synthesis one paced to real time
    with ``tts_lead_s``, see ``TtsTap``); the settings pointed at them."""
    taps = Taps(SttTap(settings.stt), LlmTap(settings.llm), TtsTap(settings.tts, tts_lead_s))
    async with taps.stt, taps.llm, taps.tts:
        stt, llm, tts = taps.stt.address, taps.llm.address, taps.tts.address
        yield dataclasses.replace(settings, stt=stt, llm=llm, tts=tts), taps
