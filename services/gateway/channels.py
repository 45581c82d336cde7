"""The gRPC channels to the three services (TLS, a client certificate, the gateway's own token), and
their stubs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from conversation import ConversationSettings
from conversation.settings import SettingError
from foundation.channels import Security, SettingNames, open_channel
from services.common.errors import ConfigError
from services.gateway.config import GatewaySettings
from voice.llm.v1 import llm_pb2_grpc
from voice.stt.v1 import stt_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

# Large enough for a long synthesis or transcription reply.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
]
_NAMES = SettingNames(
    tls="set GATEWAY_TLS_CA to the CA that signed the services' certificates",
    ca="GATEWAY_TLS_CA",
    cert="GATEWAY_TLS_CERT",
    key="GATEWAY_TLS_KEY",
)


def security(settings: GatewaySettings) -> Security:
    """How the gateway reaches the services: TLS where ``tls_ca`` or a certificate is set, its token."""
    token = settings.token.get_secret_value()
    if settings.token_file:
        try:
            token = Path(settings.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read GATEWAY_TOKEN_FILE={settings.token_file}: {exc.strerror}"
            ) from exc
    return Security(
        tls=bool(settings.tls_ca or settings.tls_cert),
        ca=_path(settings.tls_ca),
        cert=_path(settings.tls_cert),
        key=_path(settings.tls_key),
        token=token,
        names=_NAMES,
    )


def conversation_settings(settings: GatewaySettings) -> ConversationSettings:
    """A remote conversation's defaults: the services the gateway reaches, as it reaches them,
    and the tools it offers."""
    try:
        return ConversationSettings(
            stt=settings.stt_address,
            llm=settings.llm_address,
            tts=settings.tts_address,
            security=security(settings),
            mcp_config=settings.mcp_config,
            time_zone=settings.time_zone,
        )
    except SettingError as exc:
        raise ConfigError(exc.render(lambda name: f"GATEWAY_{name.upper()}")) from None


def _path(value: str) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True)
class Backends:
    stt: stt_pb2_grpc.SttServiceStub
    llm: llm_pb2_grpc.LlmServiceStub
    tts: tts_pb2_grpc.TtsServiceStub
    channels: tuple[grpc.aio.Channel, ...]
    info_timeout_s: float

    @staticmethod
    def connect(settings: GatewaySettings) -> Backends:
        reach = security(settings)
        stt, llm, tts = (
            open_channel(a, reach, _OPTIONS)
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
