"""The gRPC channels to the three services, and their stubs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from services.gateway.config import GatewaySettings
from voice.llm.v1 import llm_pb2_grpc
from voice.stt.v1 import stt_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

# Large enough for a long synthesis or transcription reply.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def open_channel(address: str, settings: GatewaySettings | None = None) -> grpc.aio.Channel:
    """The one place a channel is made: plaintext, or TLS with the services' CA and a token."""
    options = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ]
    credentials = _credentials(settings) if settings is not None else None
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


def _credentials(settings: GatewaySettings) -> grpc.ChannelCredentials | None:
    token = settings.token.get_secret_value()
    if settings.token_file:
        token = Path(settings.token_file).read_text().strip()
    if not settings.tls_ca:
        if token:
            raise ValueError("an access token is sent over TLS only: set GATEWAY_TLS_CA as well")
        return None
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(settings.tls_ca).read_bytes())
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return credentials


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
            open_channel(a, settings)
            for a in (settings.stt_address, settings.llm_address, settings.tts_address)
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
