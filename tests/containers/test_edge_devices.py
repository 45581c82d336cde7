"""`voice-agent` as `make run` starts it: real sound devices (JACK's dummy driver), the composed services."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness.edge import loud_windows_ms, silence
from harness.speech import REPO, english, wer
from tests.audio_devices import MIC_DEVICE, RATE_HZ, SPEAKER_DEVICE, virtual_audio


def test_a_spoken_turn_through_the_microphone_and_speaker(stack: None, tmp_path: Path) -> None:
    rec = english()[4]
    report = tmp_path / "turns.jsonl"
    with virtual_audio() as devices:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_client", "--input-device", MIC_DEVICE, "--output-device",
             SPEAKER_DEVICE, "--report", str(report), "--max-tokens", "20"],
            cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )  # fmt: skip
        try:
            time.sleep(3.0)  # the client connects and opens its streams
            devices.play(silence(0.5) + rec.pcm() + silence(1.0))
            deadline = time.monotonic() + 90
            while not (report.exists() and report.read_text().strip()) and time.monotonic() < deadline:
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)  # Ctrl+C
            try:
                _, stderr = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # its threads' stacks, to stderr
                raise AssertionError(
                    f"no exit 30 s after Ctrl+C:\n{proc.communicate(timeout=10)[1]}"
                ) from None
        finally:
            proc.kill()
        played = devices.recording().samples
    turns = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(turns) == 1, stderr
    assert wer(rec.text, turns[0]["user_text"]) <= 0.3 and turns[0]["agent_text"]
    # The reply came out of the speaker: 10 ms windows above -35 dBFS, 100 ms or more a word.
    loud = loud_windows_ms(played.astype(np.float32) / 32768, RATE_HZ, -35)
    words = len(str(turns[0]["agent_text"]).split())
    assert len(loud) >= 10 * max(words, 2), f"{len(loud) * 10} ms of sound for {words} words"
    assert "Session: 1 turns" in stderr
