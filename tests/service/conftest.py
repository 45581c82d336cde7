"""The services with their real models and the gateway, in-process, shared by the gateway's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.gateway_stack import Stack, gateway_stack


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    """All three services (the chat model too) and the gateway in front of them."""
    async with gateway_stack(llm=True) as stack:
        yield stack
