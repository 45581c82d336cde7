"""Running the edge client on files, as a user or another program would."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_client.config import EdgeSettings
from edge_client.conversation import Conversation
from edge_client.files import WavOutput
from edge_client.vad import FRAME_MS
from tests.speech import REPO

RATE_HZ = 16000
FRAME_BYTES = RATE_HZ * FRAME_MS // 1000 * 2


def write_wav(path: Path, pcm: bytes, rate_hz: int = RATE_HZ) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm)
    return path


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(seconds * RATE_HZ)


@dataclass
class Session:
    turns: list[dict[str, object]]
    output: np.ndarray  # float32 mono
    output_rate_hz: int
    stderr: str

    def audible(self, threshold: float = 0.02) -> np.ndarray:
        """Start times (ms) of the output's 10 ms windows louder than ``threshold`` RMS."""
        return loud_windows_ms(self.output, self.output_rate_hz, 20 * np.log10(threshold))


def loud_windows_ms(audio: np.ndarray, rate_hz: int, dbfs: float, window_ms: int = 10) -> np.ndarray:
    """Start times (ms) of the windows of float ``audio`` whose RMS level is above ``dbfs``."""
    size = rate_hz * window_ms // 1000
    frames = audio[: len(audio) // size * size].reshape(-1, size)
    level = 10 * np.log10(np.maximum((frames**2).mean(axis=1), 1e-12))
    return np.flatnonzero(level > dbfs) * window_ms


def command(tmp: Path, input_pcm: bytes, *args: str) -> list[str]:
    """``voice-agent --input in.wav --output out.wav --report turns.jsonl ARGS`` in ``tmp``."""
    wav_in = write_wav(tmp / "in.wav", input_pcm)
    return [sys.executable, "-m", "edge_client", "--input", str(wav_in), "--output", str(tmp / "out.wav"),
            "--report", str(tmp / "turns.jsonl"), *args]  # fmt: skip


def voice_agent(tmp: Path, input_pcm: bytes, *args: str, timeout: float = 300) -> Session:
    """Run ``command`` to its end; what it wrote."""
    done = subprocess.run(
        command(tmp, input_pcm, *args), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return read_session(tmp / "out.wav", tmp / "turns.jsonl", done.stderr)


def read_session(out: Path, report: Path | None, stderr: str = "") -> Session:
    with wave.open(str(out)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    turns = [json.loads(line) for line in report.read_text().splitlines() if line] if report else []
    return Session(turns, audio, rate, stderr)


def frames_of(pcm: bytes) -> list[bytes]:
    """``pcm`` as 30 ms frames, the last padded with silence."""
    return [pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0") for i in range(0, len(pcm), FRAME_BYTES)]


async def converse(
    settings: EdgeSettings,
    tmp: Path,
    frames: Callable[[Conversation], AsyncIterator[bytes]],
    timeout_s: float = 120,
) -> tuple[Conversation, Session]:
    """A conversation in this process, fed ``frames(conversation)`` in real time, recorded to a WAV."""
    output = WavOutput(tmp / "out.wav", settings.output_rate_hz)
    conversation = Conversation(settings, output, lambda kind, text: None)

    async def paced() -> AsyncIterator[bytes]:
        async for frame in frames(conversation):
            output.advance(FRAME_MS / 1000)
            yield frame
            await asyncio.sleep(FRAME_MS / 1000)

    conversation.start()
    try:
        await asyncio.wait_for(conversation.listen(paced()), timeout_s)
    finally:
        await conversation.close()
        output.close()
    session = read_session(tmp / "out.wav", None)
    session.turns = conversation.turns
    return conversation, session
