"""The microphone's stream to the STT service: audio in, finals, interims and speech events out,
as the core's own types."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from conversation.links.base import Link, Notify
from conversation.messages import Final, Judgement, SpeechEvent
from foundation.audio import FRAME_MS, RATE_HZ
from foundation.channels import Security
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

# An end of utterance with no final this long after it was sent held no speech.
_EOU_ANSWER_S = 10.0
# The STT stream is replaced, at a quiet moment, once it has carried this share of its longest.
ROLL_OVER_AT = 0.5
_JUDGEMENTS = {
    stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN: Judgement.END_OF_TURN,
    stt_pb2.SPEECH_EVENT_TYPE_TURN_INCOMPLETE: Judgement.INCOMPLETE,
}


@dataclass
class _Item:
    frame: int  # client frame index (audio) or of the moment it was sent (end of utterance)
    audio: bytes | None  # None: end of utterance
    stream_ms: float = -1.0  # offset in the current stream, once sent on it
    sent_at: float = 0.0
    traceparent: str = ""  # of the turn an end of utterance belongs to


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
        on_event: Callable[[SpeechEvent], None] | None = None,
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
        self._keep(_Item(self._frames, None, traceparent=self.trace_of(0)))

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

    def _request(self, item: _Item) -> stt_pb2.StreamingRecognizeRequest:
        if self._sent_samples == 0:
            self._base_ms = item.frame * FRAME_MS
        item.stream_ms, item.sent_at = self._sent_samples * 1000 / RATE_HZ, time.monotonic()
        if item.audio is None:
            return stt_pb2.StreamingRecognizeRequest(
                end_of_utterance=stt_pb2.EndOfUtterance(), traceparent=item.traceparent
            )
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
            event = response.speech_event
            at_ms = self._base_ms + event.offset_ms
            self._on_event(SpeechEvent(at_ms, _JUDGEMENTS.get(event.type), event.end_of_turn_probability))
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
