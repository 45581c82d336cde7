"""What the edge client tells a person when something is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.edge import silence, write_wav
from tests.speech import REPO


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
