"""Long-lived streams to the three services, each reopened when it breaks.

A stream owns what it sends: each call gets its own outbox, created with the call
and closed with it, so nothing written for a stream that died goes out on the next
one (grpc.aio does not stop a finished call's request iterator). What must not be
lost the link keeps itself and sends again on the new stream: the STT link the
microphone audio that has no final yet (bounded), the LLM link the conversation and
the turn being asked (once), the TTS link the reply's text not yet spoken.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from foundation.audio import FRAME_MS, RATE_HZ
from foundation.channels import Security, open_channel
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2, stt_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

log = logging.getLogger(__name__)

# Between attempts to reopen a stream; short, so a restarted service is found within a second.
BACKOFF_S = (0.1, 0.25, 0.5, 1.0)
# grpc's own reconnect backoff (from 1 s up to 120 s by default) would hide a service that is back.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# A stream that lived this long was healthy: the next failure starts the backoff afresh.
_HEALTHY_S = 5.0
# An end of utterance with no final this long after it was sent held no speech.
_EOU_ANSWER_S = 10.0
# A turn (or a reply's speech) waits this long for its service to come back, then fails.
RESEND_WAIT_S = 30.0
# The STT stream is replaced, at a quiet moment, once it has carried this share of its longest.
ROLL_OVER_AT = 0.5

Notify = Callable[[str], None]
Item = TypeVar("Item")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def describe(service: str, address: str, err: grpc.aio.AioRpcError) -> str:
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return (
            f"the {service} service at {address} is unreachable ({err.details()}); "
            f"start it with `docker compose up -d {service}`; retrying"
        )
    return f"the {service} service at {address} answered {err.code().name}: {err.details()}"


class _Starting(Exception):
    """The service answers, but its model is not ready yet."""


async def _serving(channel: grpc.aio.Channel) -> bool:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class Link(Generic[Item, Req, Resp]):
    """One stream to a service, reopened with backoff when it breaks; subclasses say what it carries."""

    service = ""

    def __init__(self, address: str, security: Security, notify: Notify) -> None:
        self.address = address
        self._security = security
        self._notify = notify
        self._outbox: asyncio.Queue[Item | None] | None = None  # the live stream's, None between streams
        self._closing = False
        self._rolling = False
        self.connected = False
        self.streams = 0  # streams opened so far

    def send(self, item: Item) -> bool:
        """Queue ``item`` on the live stream; False when there is none (then it is not kept here)."""
        if self._outbox is None:
            return False
        self._outbox.put_nowait(item)
        return True

    def close(self) -> None:
        """Half-close: the service finishes what it was sent, then the stream ends for good."""
        self._closing = True
        if self._outbox is not None:
            self._outbox.put_nowait(None)

    def roll_over(self) -> None:
        """Half-close the live stream and open a new one at once (no backoff, nothing reported)."""
        if self._outbox is not None and not self._rolling:
            self._rolling = True
            self._outbox.put_nowait(None)

    async def run(self) -> None:
        attempt = 0
        while not self._closing:
            outbox: asyncio.Queue[Item | None] = asyncio.Queue()
            opened_at = time.monotonic()
            try:
                async with open_channel(self.address, self._security, _CHANNEL_OPTIONS) as channel:
                    await channel.channel_ready()
                    if not await _serving(channel):
                        raise _Starting(f"the {self.service} service at {self.address} is loading its model")
                    await self._prepare(channel)
                    call = self._call(channel, self._requests(outbox))
                    self._outbox, self.connected, self._rolling = outbox, True, False
                    self.streams += 1
                    if attempt:
                        self._notify(f"the {self.service} service is back")
                    self._on_open()
                    async for response in call:
                        self._on_response(response)
                if self._closing or self._rolling:
                    continue
                problem = f"the {self.service} service ended the stream; opening a new one"
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and self._outbox is not None:
                    continue  # the service closed a stream idle for its stream_idle_s: open a new one quietly
                problem = describe(self.service, self.address, err)
            except _Starting as starting:
                problem = f"{starting}; waiting"
            except Exception as exc:  # a bug here must not end the link: say so, and start again
                log.exception("%s link failed", self.service)
                problem = f"the {self.service} link failed ({exc!r}); restarting it"
            finally:
                self._outbox, self.connected = None, False
                outbox.put_nowait(None)  # the old stream's request iterator ends here, whatever grpc does
            if time.monotonic() - opened_at > _HEALTHY_S:
                attempt = 0
            if attempt == 0:
                self._notify(problem)  # once, not at every retry
            self._on_lost()
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1

    async def _requests(self, outbox: asyncio.Queue[Item | None]) -> AsyncIterator[Req]:
        yield self._first()
        while (item := await outbox.get()) is not None:
            yield self._request(item)

    async def _prepare(self, channel: grpc.aio.Channel) -> None:
        """Before a stream opens: ask the service what the stream needs to know."""

    def _first(self) -> Req:
        raise NotImplementedError

    def _request(self, item: Item) -> Req:
        return item  # type: ignore[return-value]

    def _call(self, channel: grpc.aio.Channel, requests: AsyncIterator[Req]) -> AsyncIterator[Resp]:
        raise NotImplementedError

    def _on_open(self) -> None:
        """A new stream is live: queue on it what the lost one did not finish."""

    def _on_response(self, response: Resp) -> None:
        raise NotImplementedError

    def _on_lost(self) -> None:
        """The stream broke."""


@dataclass
class _Item:
    frame: int  # client frame index (audio) or of the moment it was sent (end of utterance)
    audio: bytes | None  # None: end of utterance
    stream_ms: float = -1.0  # offset in the current stream, once sent on it
    sent_at: float = 0.0


@dataclass(frozen=True)
class Final:
    text: str
    # Client time (ms since the first microphone frame) of the words.
    start_ms: float
    end_ms: float


class SttLink(Link[_Item, stt_pb2.StreamingRecognizeRequest, stt_pb2.StreamingRecognizeResponse]):
    """The microphone's stream: stays open across turns and reconnects; replaced before its longest."""

    service = "stt"

    def __init__(
        self,
        address: str,
        security: Security,
        on_final: Callable[[Final], None],
        notify: Notify,
        max_buffer_s: float,
        on_event: Callable[[stt_pb2.SpeechEvent], None] | None = None,
        on_interim: Callable[[Final], None] | None = None,
    ) -> None:
        super().__init__(address, security, notify)
        self._on_final = on_final
        # The words decoded at each pause (interims); None: not asked for.
        self._on_interim = on_interim
        # Speech events (the end-of-turn model's decisions); None: not asked for.
        self._on_event = on_event
        self.turn_detection: bool | None = None  # whether the service judges pauses; None: not asked yet
        self._max_items = int(max_buffer_s * 1000 / FRAME_MS)
        self._pending: collections.deque[_Item] = collections.deque()
        self._frames = 0
        self._sent_samples = 0  # on the current stream
        self._base_ms = 0.0  # client time of the current stream's first sample
        self._max_stream_s = 0.0  # the service's longest stream; 0: unknown
        self.dropped_frames = 0

    def send_audio(self, frame: bytes) -> None:
        self._keep(_Item(self._frames, frame))
        self._frames += 1
        if len(self._pending) > self._max_items:
            self._pending.popleft()
            self.dropped_frames += 1

    def end_utterance(self) -> None:
        self._keep(_Item(self._frames, None))

    def _keep(self, item: _Item) -> None:
        self._pending.append(item)
        self.send(item)

    @property
    def roll_over_due(self) -> bool:
        """The stream has carried enough audio that it should be replaced at the next quiet moment."""
        limit = self._max_stream_s * ROLL_OVER_AT
        return self.connected and limit > 0 and self._sent_samples / RATE_HZ >= limit

    def trim_idle(self, keep_ms: int) -> None:
        """The user is silent and nothing awaits a final: forget all but the last ``keep_ms`` sent."""
        now = time.monotonic()
        if any(
            i.audio is None and (i.stream_ms < 0 or now - i.sent_at < _EOU_ANSWER_S) for i in self._pending
        ):
            return
        keep = keep_ms // FRAME_MS
        while len(self._pending) > keep and self._pending[0].stream_ms >= 0:
            self._pending.popleft()

    async def _prepare(self, channel: grpc.aio.Channel) -> None:
        try:
            info = await stt_pb2_grpc.SttServiceStub(channel).GetInfo(stt_pb2.GetInfoRequest(), timeout=5)
        except grpc.aio.AioRpcError:
            info = stt_pb2.GetInfoResponse()  # then the service's OUT_OF_RANGE ends the stream, and so on
        self._max_stream_s = float(info.max_stream_duration_s)
        self.turn_detection = self._on_event is not None and info.supports_turn_detection

    def _first(self) -> stt_pb2.StreamingRecognizeRequest:
        config = stt_pb2.RecognitionConfig(
            sample_rate_hz=RATE_HZ,
            enable_turn_detection=bool(self.turn_detection),
            pause_interims=self._on_interim is not None,
        )
        return stt_pb2.StreamingRecognizeRequest(config=config)

    def time_ms(self, offset_ms: float) -> float:
        """Client time of an offset in the current stream."""
        return self._base_ms + offset_ms

    def _request(self, item: _Item) -> stt_pb2.StreamingRecognizeRequest:
        if self._sent_samples == 0:
            self._base_ms = item.frame * FRAME_MS
        item.stream_ms, item.sent_at = self._sent_samples * 1000 / RATE_HZ, time.monotonic()
        if item.audio is None:
            return stt_pb2.StreamingRecognizeRequest(end_of_utterance=stt_pb2.EndOfUtterance())
        self._sent_samples += len(item.audio) // 2
        return stt_pb2.StreamingRecognizeRequest(audio_content=item.audio)

    def _call(
        self, channel: grpc.aio.Channel, requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest]
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        return stt_pb2_grpc.SttServiceStub(channel).StreamingRecognize(requests)  # type: ignore[no-any-return]

    def _on_open(self) -> None:
        # Everything without a final yet is sent again, in order, on the new stream.
        self._sent_samples = 0
        for item in self._pending:
            item.stream_ms = -1.0
            self.send(item)

    def _on_response(self, response: stt_pb2.StreamingRecognizeResponse) -> None:
        if response.HasField("speech_event") and self._on_event is not None:
            self._on_event(response.speech_event)
        for result in response.results:
            words = Final(result.transcript, self._base_ms + result.start_ms, self._base_ms + result.end_ms)
            if result.is_final:
                self._on_final(words)
                self._acknowledge(result)  # only once taken: if that failed, the audio is sent again
            elif self._on_interim is not None:
                self._on_interim(words)

    def _acknowledge(self, result: stt_pb2.SpeechRecognitionResult) -> None:
        """Forget the audio a final covers, through the end of utterance that asked for it."""
        while self._pending and 0 <= self._pending[0].stream_ms < result.end_ms:
            self._pending.popleft()
        while self._pending and self._pending[0].stream_ms >= 0:
            if self._pending.popleft().audio is None:
                break


@dataclass
class _Asked:
    """The LLM turn in progress."""

    text: str
    turn_id: int
    events: asyncio.Queue[llm_pb2.StreamingChatResponse]
    deltas: str = ""
    give_up: asyncio.TimerHandle | None = None  # ends the turn if the service stays away


class LlmLink(
    Link[llm_pb2.StreamingChatRequest, llm_pb2.StreamingChatRequest, llm_pb2.StreamingChatResponse]
):
    """The conversation's stream; the history is mirrored here to restore it on a new stream.

    A turn cut by a lost stream before its first word is asked again on the next
    stream (for up to ``RESEND_WAIT_S``); one cut after its first words ends there,
    with an error: what was already said is never said again.
    """

    service = "llm"

    def __init__(
        self, address: str, security: Security, system_prompt: str, max_tokens: int, notify: Notify
    ) -> None:
        super().__init__(address, security, notify)
        self._config = llm_pb2.ChatConfig(system_prompt=system_prompt, max_tokens=max_tokens)
        self.history: list[llm_pb2.Message] = []
        self._asked: _Asked | None = None

    async def turn(self, text: str, turn_id: int) -> AsyncIterator[llm_pb2.StreamingChatResponse]:
        """Ask; yield this turn's deltas and then its end (an error end if the service fails it)."""
        asked = self._asked = _Asked(text, turn_id, asyncio.Queue())
        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_USER, content=text))
        if not self.send(self._ask(asked)):
            self._wait_for_service(asked)
        try:
            while True:
                event = await asked.events.get()
                yield event
                if event.HasField("turn_end"):
                    if event.turn_end.text:
                        self.history.append(
                            llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=event.turn_end.text)
                        )
                    return
        finally:
            if asked.give_up is not None:
                asked.give_up.cancel()
            if self._asked is asked:
                self._asked = None

    def cancel(self, turn_id: int) -> None:
        asked = self._asked
        if not self.send(llm_pb2.StreamingChatRequest(cancel=llm_pb2.Cancel(turn_id=turn_id))) and asked:
            self._end(asked, llm_pb2.FINISH_REASON_CANCELLED)  # nothing runs in the service to cancel

    def truncate(self, heard: str, turn_id: int) -> None:
        if self.history and self.history[-1].role == llm_pb2.ROLE_ASSISTANT:
            self.history[-1].content = heard
        elif heard:
            self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=heard))
        self.send(llm_pb2.StreamingChatRequest(truncate=llm_pb2.Truncate(heard_text=heard, turn_id=turn_id)))

    def retract(self, turn_id: int) -> None:
        """Withdraw the last turn (ended) from the conversation, here and in the service."""
        while self.history and self.history.pop().role != llm_pb2.ROLE_USER:
            pass
        self.send(llm_pb2.StreamingChatRequest(retract=llm_pb2.Retract(turn_id=turn_id)))

    def _ask(self, asked: _Asked) -> llm_pb2.StreamingChatRequest:
        return llm_pb2.StreamingChatRequest(
            user_turn=llm_pb2.UserTurn(text=asked.text, turn_id=asked.turn_id)
        )

    def _first(self) -> llm_pb2.StreamingChatRequest:
        asked = self._asked
        config = llm_pb2.ChatConfig()
        config.CopyFrom(self._config)
        config.history.extend(self.history[:-1] if asked is not None else self.history)
        return llm_pb2.StreamingChatRequest(config=config)

    def _call(
        self, channel: grpc.aio.Channel, requests: AsyncIterator[llm_pb2.StreamingChatRequest]
    ) -> AsyncIterator[llm_pb2.StreamingChatResponse]:
        return llm_pb2_grpc.LlmServiceStub(channel).StreamingChat(requests)  # type: ignore[no-any-return]

    def _on_open(self) -> None:
        if self._asked is not None:
            self.send(self._ask(self._asked))

    def _on_response(self, response: llm_pb2.StreamingChatResponse) -> None:
        asked = self._asked
        kind = response.WhichOneof("response")
        turn_id = response.delta.turn_id if kind == "delta" else response.turn_end.turn_id
        if asked is None or turn_id != asked.turn_id:
            return  # of a turn that is over
        if asked.give_up is not None:
            asked.give_up.cancel()
        if kind == "delta":
            asked.deltas += response.delta.text
        asked.events.put_nowait(response)

    def _on_lost(self) -> None:
        asked = self._asked
        if asked is not None and asked.deltas:
            self._end(asked, llm_pb2.FINISH_REASON_ERROR, "the chat service was lost during this reply")
        elif asked is not None:
            self._wait_for_service(asked)

    def _wait_for_service(self, asked: _Asked) -> None:
        if asked.give_up is None:
            message = f"the chat service did not come back within {RESEND_WAIT_S:.0f} s"
            asked.give_up = asyncio.get_running_loop().call_later(
                RESEND_WAIT_S, self._end, asked, llm_pb2.FINISH_REASON_ERROR, message
            )

    def _end(self, asked: _Asked, reason: llm_pb2.FinishReason, message: str = "") -> None:
        """End ``asked`` here: with what it said so far, and the error that stopped it."""
        if self._asked is not asked:
            return
        self._asked = None
        error = llm_pb2.TurnError(code=grpc.StatusCode.UNAVAILABLE.value[0], message=message, retryable=True)
        end = llm_pb2.TurnEnd(
            finish_reason=reason, text=asked.deltas, turn_id=asked.turn_id, error=error if message else None
        )
        asked.events.put_nowait(llm_pb2.StreamingChatResponse(turn_end=end))


@dataclass
class _Reply:
    """The text of the reply being spoken, for the turn ``turn_id``."""

    turn_id: int
    text: str = ""
    spoken_words: int = 0  # words whose audio has begun to arrive
    flushed: bool = False
    give_up: asyncio.TimerHandle | None = None


class TtsLink(
    Link[
        tts_pb2.StreamingSynthesizeRequest,
        tts_pb2.StreamingSynthesizeRequest,
        tts_pb2.StreamingSynthesizeResponse,
    ]
):
    """The speech stream: text in as it comes, audio chunks out to ``on_response``.

    Every request names its turn. When the stream breaks, the reply's text whose
    audio had not begun to arrive is sent again on the next stream.
    """

    service = "tts"

    def __init__(
        self,
        address: str,
        security: Security,
        voice: str,
        sample_rate_hz: int,
        on_response: Callable[[tts_pb2.StreamingSynthesizeResponse], None],
        notify: Notify,
    ) -> None:
        super().__init__(address, security, notify)
        self._config = tts_pb2.SynthesisConfig(voice=voice, sample_rate_hz=sample_rate_hz)
        self._deliver = on_response
        self._reply: _Reply | None = None

    def text(self, text: str, turn_id: int) -> None:
        if self._reply is None or self._reply.turn_id != turn_id:
            self._drop_reply()
            self._reply = _Reply(turn_id)
        self._reply.text += text
        self.send(tts_pb2.StreamingSynthesizeRequest(text=text, turn_id=turn_id))

    def flush(self, turn_id: int) -> None:
        if self._reply is None or self._reply.turn_id != turn_id:
            self._drop_reply()
            self._reply = _Reply(turn_id)
        self._reply.flushed = True
        if not self.send(tts_pb2.StreamingSynthesizeRequest(flush=tts_pb2.Flush(), turn_id=turn_id)):
            self._wait_for_service(self._reply)

    def cancel(self, turn_id: int) -> None:
        if self._reply is not None and self._reply.turn_id == turn_id:
            self._drop_reply()
        self.send(tts_pb2.StreamingSynthesizeRequest(cancel=tts_pb2.Cancel(), turn_id=turn_id))

    def _drop_reply(self) -> None:
        if self._reply is not None and self._reply.give_up is not None:
            self._reply.give_up.cancel()
        self._reply = None

    def _first(self) -> tts_pb2.StreamingSynthesizeRequest:
        return tts_pb2.StreamingSynthesizeRequest(config=self._config)

    def _call(
        self, channel: grpc.aio.Channel, requests: AsyncIterator[tts_pb2.StreamingSynthesizeRequest]
    ) -> AsyncIterator[tts_pb2.StreamingSynthesizeResponse]:
        return tts_pb2_grpc.TtsServiceStub(channel).StreamingSynthesize(requests)  # type: ignore[no-any-return]

    def _on_open(self) -> None:
        reply = self._reply
        if reply is None:
            return
        rest = " ".join(reply.text.split()[reply.spoken_words :])
        if rest:
            self.send(tts_pb2.StreamingSynthesizeRequest(text=rest, turn_id=reply.turn_id))
        if reply.flushed:
            self.send(tts_pb2.StreamingSynthesizeRequest(flush=tts_pb2.Flush(), turn_id=reply.turn_id))

    def _on_response(self, response: tts_pb2.StreamingSynthesizeResponse) -> None:
        reply = self._reply
        if reply is not None and response.HasField("audio") and response.audio.turn_id == reply.turn_id:
            reply.spoken_words += len(response.audio.text.split())
            if reply.give_up is not None:
                reply.give_up.cancel()
                reply.give_up = None
        elif reply is not None and response.HasField("done") and response.done.turn_id == reply.turn_id:
            self._drop_reply()  # all of it is spoken
        self._deliver(response)

    def _on_lost(self) -> None:
        if self._reply is not None and self._reply.flushed:
            self._wait_for_service(self._reply)

    def _wait_for_service(self, reply: _Reply) -> None:
        if reply.give_up is None:
            reply.give_up = asyncio.get_running_loop().call_later(RESEND_WAIT_S, self._give_up, reply)

    def _give_up(self, reply: _Reply) -> None:
        """The service stayed away: the reply ends with what was spoken."""
        if self._reply is reply:
            self._reply = None
            done = tts_pb2.SynthesisDone(turn_id=reply.turn_id)
            self._deliver(tts_pb2.StreamingSynthesizeResponse(done=done))


async def check_reachable(addresses: dict[str, str], security: Security, timeout_s: float = 3.0) -> list[str]:
    """Problems with each service that does not answer its health check in time."""
    problems = []
    for name, address in addresses.items():
        async with open_channel(address, security) as channel:
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
