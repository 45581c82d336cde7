"""Run the TTS service: ``python -m services.tts``."""

from __future__ import annotations

import asyncio

from foundation import tracing
from services.common.logs import configure_logging
from services.common.server import serve
from services.tts.config import TtsSettings
from services.tts.engine import create_engine
from services.tts.servicer import SERVICE_NAME, TtsServicer
from voice.tts.v1 import tts_pb2_grpc


def main() -> None:
    settings = TtsSettings()
    configure_logging(settings.log_level)
    tracing.setup("voice-tts")  # off unless the OTEL_* variables ask for traces
    engine = create_engine(settings)
    servicer = TtsServicer(engine, settings)
    asyncio.run(
        serve(
            settings,
            lambda server: tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            engine.load,
        )
    )


if __name__ == "__main__":
    main()
