"""The services with their real models and the gateway, in-process, shared by the gateway's tests;
the real speech service's servicer, for tests that serve it beside a chat service of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.gateway_stack import Stack, gateway_stack
from services.tts.config import TtsSettings
from services.tts.engine import create_engine
from services.tts.servicer import TtsServicer


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    """All three services (the chat model too) and the gateway in front of them."""
    async with gateway_stack(llm=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def tts() -> TtsServicer:
    """The speech service's servicer with its real voice, loaded."""
    settings = TtsSettings()
    engine = create_engine(settings)
    engine.load()
    return TtsServicer(engine, settings)
