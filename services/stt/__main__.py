"""Run the STT service: ``python -m services.stt``."""

from __future__ import annotations

import asyncio

from foundation import tracing
from services.common.logs import configure_logging
from services.common.server import serve
from services.stt.config import SttSettings
from services.stt.engine import create_engine
from services.stt.servicer import SERVICE_NAME, SttServicer
from voice.stt.v1 import stt_pb2_grpc


def main() -> None:
    settings = SttSettings()
    configure_logging(settings.log_level)
    tracing.setup("voice-stt")  # off unless the OTEL_* variables ask for traces
    engine = create_engine(settings)
    servicer = SttServicer(engine, settings)
    asyncio.run(
        serve(
            settings,
            lambda server: stt_pb2_grpc.add_SttServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            servicer.load,
        )
    )


if __name__ == "__main__":
    main()
