"""What the edge client tells a person when something is missing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from harness.edge import silence, write_wav
from harness.servers import running_server
from harness.speech import REPO
from services.llm.config import EMBEDDED_MODEL_NOTICE, LlmSettings
from services.llm.engines.local import LocalEngine
from services.llm.servicer import SERVICE_NAME, LlmServicer
from voice.llm.v1 import llm_pb2_grpc


def test_unreachable_services_are_named_with_how_to_start_them(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "in.wav", silence(0.5))
    done = subprocess.run(
        [sys.executable, "-m", "edge_client", "--input", str(wav), "--output", str(tmp_path / "out.wav"),
         "--stt", "127.0.0.1:9", "--llm", "127.0.0.1:9", "--tts", "127.0.0.1:9"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    for service in ("stt", "llm", "tts"):
        assert f"the {service} service at 127.0.0.1:9 is unreachable" in done.stderr
        assert f"docker compose up -d {service}" in done.stderr


def test_a_missing_sound_device_is_explained(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge_client", "--test-speaker", "--output-device", "no-such-speaker"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no-such-speaker" in done.stderr and "Output devices:" in done.stderr


async def test_the_chat_services_note_on_its_model_is_shown_once(tmp_path: Path) -> None:
    settings = LlmSettings(host="127.0.0.1", port=0, metrics_port=0, engine="local")
    servicer = LlmServicer(LocalEngine(settings), settings)  # GetInfo needs no loaded model
    add = llm_pb2_grpc.add_LlmServiceServicer_to_server
    register = lambda server: add(servicer, server)  # noqa: E731
    async with running_server(settings, register, [SERVICE_NAME]) as server:
        address = f"127.0.0.1:{server.port}"
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "edge_client", "--text", "--output", str(tmp_path / "out.wav"),
             "--llm", address, "--tts", address],
            cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = " ".join(done.stderr.split())  # the console wraps long lines
    assert shown.count(EMBEDDED_MODEL_NOTICE) == 1, done.stderr
