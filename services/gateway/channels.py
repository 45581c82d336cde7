"""The gRPC channels to the three services, and their stubs."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from services.gateway.config import GatewaySettings
from voice.llm.v1 import llm_pb2_grpc
from voice.stt.v1 import stt_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

# Large enough for a long synthesis or transcription reply.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def open_channel(address: str) -> grpc.aio.Channel:
    """The one place a channel is made, so credentials can be added here."""
    options = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ]
    return grpc.aio.insecure_channel(address, options=options)


@dataclass(frozen=True)
class Backends:
    stt: stt_pb2_grpc.SttServiceStub
    llm: llm_pb2_grpc.LlmServiceStub
    tts: tts_pb2_grpc.TtsServiceStub
    channels: tuple[grpc.aio.Channel, ...]
    info_timeout_s: float

    @staticmethod
    def connect(settings: GatewaySettings) -> Backends:
        stt, llm, tts = (
            open_channel(a) for a in (settings.stt_address, settings.llm_address, settings.tts_address)
        )
        return Backends(
            stt=stt_pb2_grpc.SttServiceStub(stt),
            llm=llm_pb2_grpc.LlmServiceStub(llm),
            tts=tts_pb2_grpc.TtsServiceStub(tts),
            channels=(stt, llm, tts),
            info_timeout_s=settings.info_timeout_s,
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
