"""Certificates from ``deploy/certs.sh`` and in-process servers with TLS, tokens and limits."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from harness.speech import REPO
from services.common.server import VoiceServer, build_server
from services.stt.config import SttSettings
from services.stt.engine import EngineInfo, Transcript
from services.stt.servicer import SERVICE_NAME, SttServicer
from voice.stt.v1 import stt_pb2_grpc

TOKEN_A = "a" * 20 + "-first-token"
TOKEN_B = "b" * 20 + "-second-token"
TOKENS = f"alice:{TOKEN_A},bob:{TOKEN_B}"


def make_certs(folder: Path) -> Path:
    """A CA, service and client certificates and a token in ``folder``, as ``make certs`` makes them."""
    subprocess.run(["bash", str(REPO / "deploy" / "certs.sh"), str(folder)], check=True, capture_output=True)
    return folder


class FixedEngine:
    """Answers "hello" to any audio after a short wait, so streams last a while."""

    info = EngineInfo("fixed", ["en"], False, "cpu", "int8")

    def load(self) -> None:
        pass

    def transcribe(
        self, audio: np.ndarray, language: str | None, word_timestamps: bool, beam_size: int
    ) -> Transcript:
        time.sleep(0.1)
        return Transcript("hello", "en", 0.0, len(audio) / 16000)


@asynccontextmanager
async def stt_server(**settings: Any) -> AsyncIterator[VoiceServer]:
    """The STT servicer over FixedEngine on 127.0.0.1, a free port, with ``settings``; SERVING."""
    config = SttSettings(host="127.0.0.1", port=0, metrics_port=0, **settings)
    servicer = SttServicer(FixedEngine(), config)
    server = await build_server(
        config, lambda s: stt_pb2_grpc.add_SttServiceServicer_to_server(servicer, s), [SERVICE_NAME]
    )
    await server.set_ready()
    try:
        yield server
    finally:
        await server.stop(0)
