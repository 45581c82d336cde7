"""Run the LLM service: ``python -m services.llm``."""

from __future__ import annotations

import asyncio
import logging
import sys

from foundation import tracing
from foundation.errors import ConfigError
from services.common.logs import configure_logging
from services.common.server import serve
from services.llm.config import LlmSettings
from services.llm.engine import create_engine
from services.llm.servicer import SERVICE_NAME, LlmServicer
from voice.llm.v1 import llm_pb2_grpc

log = logging.getLogger("services.llm")


def main() -> None:
    settings = LlmSettings()
    configure_logging(settings.log_level)
    tracing.setup("voice-llm")  # off unless the OTEL_* variables ask for traces
    try:
        engine = create_engine(settings)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(f"llm: {exc}")
    log.info("engine", extra={"engine": engine.name, "model": engine.model, "fallback": settings.fallback})
    if settings.notice:
        log.warning(settings.notice)
    servicer = LlmServicer(engine, settings)
    asyncio.run(
        serve(
            settings,
            lambda server: llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            engine.load,
        )
    )


if __name__ == "__main__":
    main()
