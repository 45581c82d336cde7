"""Run the gateway: ``python -m services.gateway``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from foundation import tracing
from foundation.errors import ConfigError
from services.common.logs import configure_logging, redact
from services.gateway.access import http_tokens
from services.gateway.channels import security
from services.gateway.config import GatewaySettings
from services.gateway.server import running_gateway

log = logging.getLogger("services.gateway")


async def _run(settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running_gateway(settings) as ports:
        log.info(
            "ready",
            extra={
                "http_port": ports.http,
                "wyoming_stt_port": ports.wyoming_stt,
                "wyoming_tts_port": ports.wyoming_tts,
                "audiosocket_port": ports.audiosocket,
                "stt": settings.stt_address,
                "llm": settings.llm_address,
                "tts": settings.tts_address,
            },
        )
        await stop.wait()
    log.info("stopped")


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    tracing.setup("voice-gateway")  # off unless the OTEL_* variables ask for traces
    try:
        # No log line shows the gateway's token or its callers'.
        redact([security(settings).token, *http_tokens(settings).values()])
        asyncio.run(_run(settings))
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(f"gateway: {exc}")


if __name__ == "__main__":
    main()
