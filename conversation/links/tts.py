"""The reply's stream to the TTS service: text in as it comes, audio out, as the core's own types."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from conversation.links.base import RESEND_WAIT_S, Link, Notify
from conversation.messages import AudioChunk, AudioDone, Speech
from foundation.channels import Security
from voice.tts.v1 import tts_pb2, tts_pb2_grpc


@dataclass
class _Reply:
    """The text of the reply being spoken, for the turn ``turn_id``."""

    turn_id: int
    text: str = ""
    spoken_words: int = 0  # words whose audio has begun to arrive
    flushed: bool = False
    traceparent: str = ""  # of the turn, on each of its requests
    give_up: asyncio.TimerHandle | None = None


class TtsLink(
    Link[
        tts_pb2.StreamingSynthesizeRequest,
        tts_pb2.StreamingSynthesizeRequest,
        tts_pb2.StreamingSynthesizeResponse,
    ]
):
    """The speech stream: text in as it comes, audio chunks out to ``on_speech``.

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
        on_speech: Callable[[Speech], None],
        notify: Notify,
    ) -> None:
        super().__init__(address, security, notify)
        self._config = tts_pb2.SynthesisConfig(voice=voice, sample_rate_hz=sample_rate_hz)
        self._deliver = on_speech
        self._reply: _Reply | None = None

    def text(self, text: str, turn_id: int) -> None:
        reply = self._reply_of(turn_id)
        reply.text += text
        self.send(
            tts_pb2.StreamingSynthesizeRequest(text=text, turn_id=turn_id, traceparent=reply.traceparent)
        )

    def flush(self, turn_id: int) -> None:
        reply = self._reply_of(turn_id)
        reply.flushed = True
        flush = tts_pb2.StreamingSynthesizeRequest(
            flush=tts_pb2.Flush(), turn_id=turn_id, traceparent=reply.traceparent
        )
        if not self.send(flush):
            self._wait_for_service(reply)

    def _reply_of(self, turn_id: int) -> _Reply:
        if self._reply is None or self._reply.turn_id != turn_id:
            self._drop_reply()
            self._reply = _Reply(turn_id, traceparent=self.trace_of(turn_id))
        return self._reply

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
        trace = reply.traceparent
        if rest:
            self.send(tts_pb2.StreamingSynthesizeRequest(text=rest, turn_id=reply.turn_id, traceparent=trace))
        if reply.flushed:
            flush = tts_pb2.Flush()
            self.send(
                tts_pb2.StreamingSynthesizeRequest(flush=flush, turn_id=reply.turn_id, traceparent=trace)
            )

    def _on_response(self, response: tts_pb2.StreamingSynthesizeResponse) -> None:
        reply = self._reply
        if reply is not None and response.HasField("audio") and response.audio.turn_id == reply.turn_id:
            reply.spoken_words += len(response.audio.text.split())
            if reply.give_up is not None:
                reply.give_up.cancel()
                reply.give_up = None
        elif reply is not None and response.HasField("done") and response.done.turn_id == reply.turn_id:
            self._drop_reply()  # all of it is spoken
        if response.HasField("done"):
            self._deliver(AudioDone(response.done.turn_id, response.done.cancelled))
        else:
            audio = response.audio
            self._deliver(AudioChunk(audio.turn_id, audio.audio_content, audio.text))

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
            self._deliver(AudioDone(reply.turn_id))
