"""Long-lived streams to the three services, each reconnecting on its own.

A link keeps what it must not lose: the STT link keeps the microphone audio
that has no final transcript yet (bounded) and sends it again on a new stream;
the LLM link keeps the conversation and restores it with the new stream's config.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from edge_client.channels import open_channel
from edge_client.vad import FRAME_MS, RATE_HZ
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2, stt_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)
# An end of utterance with no final this long after it was sent held no speech.
_EOU_ANSWER_S = 10.0

Notify = Callable[[str], None]
R = TypeVar("R")


def describe(service: str, address: str, err: grpc.aio.AioRpcError) -> str:
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return (
            f"the {service} service at {address} is unreachable ({err.details()}); "
            f"start it with `docker compose up -d {service}`; retrying"
        )
    return f"the {service} service at {address} answered {err.code().name}: {err.details()}"


async def reconnecting(
    service: str,
    address: str,
    notify: Notify,
    open_stream: Callable[[grpc.aio.Channel], AsyncIterator[R]],
    on_response: Callable[[R], None],
    on_lost: Callable[[], None],
) -> None:
    """Run a stream until it ends; when it breaks, say so and open a new one, with backoff."""
    attempt = 0
    while True:
        try:
            async with open_channel(address) as channel:
                await channel.channel_ready()
                attempt = 0
                async for response in open_stream(channel):
                    on_response(response)
                return
        except grpc.aio.AioRpcError as err:
            notify(describe(service, address, err))
            on_lost()
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1


@dataclass
class _Item:
    frame: int  # client frame index (audio) or of the moment it was sent (end of utterance)
    audio: bytes | None  # None: end of utterance
    stream_ms: float = -1.0  # offset in the current stream, once sent
    sent_at: float = 0.0


@dataclass(frozen=True)
class Final:
    text: str
    # Client time (ms since the first microphone frame) of the words.
    start_ms: float
    end_ms: float


class SttLink:
    """The microphone's stream: stays open across turns, and across reconnects."""

    def __init__(
        self, address: str, on_final: Callable[[Final], None], notify: Notify, max_buffer_s: float
    ) -> None:
        self.address = address
        self._on_final = on_final
        self._notify = notify
        self._max_items = int(max_buffer_s * 1000 / FRAME_MS)
        self._pending: collections.deque[_Item] = collections.deque()
        self._cursor = 0  # next pending item to send on the current stream
        self._frames = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._base_ms = 0.0
        self.dropped_frames = 0
        self.connected = False

    def send_audio(self, frame: bytes) -> None:
        self._pending.append(_Item(self._frames, frame))
        self._frames += 1
        if len(self._pending) > self._max_items:
            self._pending.popleft()
            self._cursor = max(0, self._cursor - 1)
            self.dropped_frames += 1
        self._wakeup.set()

    def end_utterance(self) -> None:
        self._pending.append(_Item(self._frames, None))
        self._wakeup.set()

    def trim_idle(self, keep_ms: int) -> None:
        """The user is silent and nothing awaits a final: forget all but the last ``keep_ms``."""
        now = time.monotonic()
        if any(
            i.audio is None and (i.stream_ms < 0 or now - i.sent_at < _EOU_ANSWER_S) for i in self._pending
        ):
            return
        keep = keep_ms // FRAME_MS
        while len(self._pending) > keep and self._cursor > 0:
            self._pending.popleft()
            self._cursor -= 1

    async def close(self) -> None:
        """Half-close: the service finalises what is pending, then the stream ends."""
        self._closing = True
        self._wakeup.set()

    async def _requests(self) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=stt_pb2.RecognitionConfig(sample_rate_hz=RATE_HZ))
        sent_samples = 0
        while True:
            while self._cursor < len(self._pending):
                item = self._pending[self._cursor]
                if sent_samples == 0:
                    self._base_ms = item.frame * FRAME_MS  # client time of this stream's first sample
                self._cursor += 1
                item.stream_ms, item.sent_at = sent_samples * 1000 / RATE_HZ, time.monotonic()
                if item.audio is None:
                    yield stt_pb2.StreamingRecognizeRequest(end_of_utterance=stt_pb2.EndOfUtterance())
                else:
                    sent_samples += len(item.audio) // 2
                    yield stt_pb2.StreamingRecognizeRequest(audio_content=item.audio)
            if self._closing:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    def _acknowledge(self, result: stt_pb2.SpeechRecognitionResult) -> Final:
        """Forget the audio a final covers, through the end of utterance that asked for it."""
        while self._cursor > 0 and self._pending[0].stream_ms < result.end_ms:
            self._pending.popleft()
            self._cursor -= 1
        while self._cursor > 0:
            self._cursor -= 1
            if self._pending.popleft().audio is None:
                break
        return Final(result.transcript, self._base_ms + result.start_ms, self._base_ms + result.end_ms)

    def _open(self, channel: grpc.aio.Channel) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        self.connected, self._cursor = True, 0  # a new stream: everything pending is sent again
        call = stt_pb2_grpc.SttServiceStub(channel).StreamingRecognize(self._requests())
        return call  # type: ignore[no-any-return]

    def _on_response(self, response: stt_pb2.StreamingRecognizeResponse) -> None:
        for result in response.results:
            if result.is_final:
                self._on_final(self._acknowledge(result))

    def _on_lost(self) -> None:
        self.connected = False

    async def run(self) -> None:
        await reconnecting("stt", self.address, self._notify, self._open, self._on_response, self._on_lost)


class LlmLink:
    """The conversation's stream; the history is mirrored here to restore it on a new stream."""

    def __init__(self, address: str, system_prompt: str, max_tokens: int, notify: Notify) -> None:
        self.address = address
        self._config = llm_pb2.ChatConfig(system_prompt=system_prompt, max_tokens=max_tokens)
        self._notify = notify
        self.history: list[llm_pb2.Message] = []
        self._outbox: asyncio.Queue[llm_pb2.StreamingChatRequest | None] = asyncio.Queue()
        self._events: asyncio.Queue[llm_pb2.StreamingChatResponse] = asyncio.Queue()
        self._active: str | None = None  # the user text of the turn in progress

    async def turn(self, text: str) -> AsyncIterator[llm_pb2.StreamingChatResponse]:
        """Ask; yield deltas and then the turn's end. A turn cut by a lost stream is asked again."""
        self._active = text
        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_USER, content=text))
        self._outbox.put_nowait(llm_pb2.StreamingChatRequest(user_turn=llm_pb2.UserTurn(text=text)))
        while True:
            event = await self._events.get()
            yield event
            if event.HasField("turn_end"):
                self._active = None
                self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=event.turn_end.text))
                return

    def cancel(self) -> None:
        self._outbox.put_nowait(llm_pb2.StreamingChatRequest(cancel=llm_pb2.Cancel()))

    def truncate(self, heard: str) -> None:
        if self.history and self.history[-1].role == llm_pb2.ROLE_ASSISTANT:
            self.history[-1].content = heard
        self._outbox.put_nowait(llm_pb2.StreamingChatRequest(truncate=llm_pb2.Truncate(heard_text=heard)))

    def retract(self) -> None:
        """Withdraw the last turn (ended) from the conversation, here and in the service."""
        while self.history and self.history.pop().role != llm_pb2.ROLE_USER:
            pass
        self._outbox.put_nowait(llm_pb2.StreamingChatRequest(retract=llm_pb2.Retract()))

    def close(self) -> None:
        self._outbox.put_nowait(None)

    async def _requests(self) -> AsyncIterator[llm_pb2.StreamingChatRequest]:
        restored = self.history[:-1] if self._active is not None else self.history
        config = llm_pb2.ChatConfig()
        config.CopyFrom(self._config)
        config.history.extend(restored)
        yield llm_pb2.StreamingChatRequest(config=config)
        if self._active is not None:
            yield llm_pb2.StreamingChatRequest(user_turn=llm_pb2.UserTurn(text=self._active))
        while (request := await self._outbox.get()) is not None:
            yield request

    def _on_lost(self) -> None:
        # Requests queued for the lost stream are moot; the turn in progress is asked again.
        while not self._outbox.empty():
            self._outbox.get_nowait()

    async def run(self) -> None:
        await reconnecting(
            "llm",
            self.address,
            self._notify,
            lambda channel: llm_pb2_grpc.LlmServiceStub(channel).StreamingChat(self._requests()),
            self._events.put_nowait,
            self._on_lost,
        )


class TtsLink:
    """The speech stream: text in as it comes, audio chunks out to ``on_audio``."""

    def __init__(
        self,
        address: str,
        voice: str,
        sample_rate_hz: int,
        on_response: Callable[[tts_pb2.StreamingSynthesizeResponse], None],
        notify: Notify,
    ) -> None:
        self.address = address
        self._config = tts_pb2.SynthesisConfig(voice=voice, sample_rate_hz=sample_rate_hz)
        self._on_response = on_response
        self._notify = notify
        self._outbox: asyncio.Queue[tts_pb2.StreamingSynthesizeRequest | None] = asyncio.Queue()

    def text(self, text: str) -> None:
        self._outbox.put_nowait(tts_pb2.StreamingSynthesizeRequest(text=text))

    def flush(self) -> None:
        self._outbox.put_nowait(tts_pb2.StreamingSynthesizeRequest(flush=tts_pb2.Flush()))

    def cancel(self) -> None:
        self._outbox.put_nowait(tts_pb2.StreamingSynthesizeRequest(cancel=tts_pb2.Cancel()))

    def close(self) -> None:
        self._outbox.put_nowait(None)

    async def _requests(self) -> AsyncIterator[tts_pb2.StreamingSynthesizeRequest]:
        yield tts_pb2.StreamingSynthesizeRequest(config=self._config)
        while (request := await self._outbox.get()) is not None:
            yield request

    def _on_lost(self) -> None:
        # The rest of the reply being spoken is lost with the stream: end it there.
        self._on_response(tts_pb2.StreamingSynthesizeResponse(done=tts_pb2.SynthesisDone()))

    async def run(self) -> None:
        await reconnecting(
            "tts",
            self.address,
            self._notify,
            lambda channel: tts_pb2_grpc.TtsServiceStub(channel).StreamingSynthesize(self._requests()),
            self._on_response,
            self._on_lost,
        )


async def check_reachable(addresses: dict[str, str], timeout_s: float = 3.0) -> list[str]:
    """Problems with each service that does not answer its health check in time."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    problems = []
    for name, address in addresses.items():
        async with open_channel(address) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=timeout_s
                )
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    problems.append(
                        f"the {name} service at {address} is starting (its model is loading); wait"
                    )
            except grpc.aio.AioRpcError as err:
                problems.append(describe(name, address, err).replace("; retrying", ""))
    return problems
