"""The chat service refuses an embedded model file that is not the one its name promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.speech import REPO
from services.llm.models import QWEN_05B
from tests.service.test_edge_links import free_port

pytestmark = pytest.mark.service


def test_the_service_will_not_start_on_a_file_whose_sha256_differs(tmp_path: Path) -> None:
    # The service looks in $HOME/.cache/voice-agent/models, as in the image.
    models = tmp_path / ".cache" / "voice-agent" / "models"
    models.mkdir(parents=True)
    (models / QWEN_05B.file_name).write_bytes(b"GGUF" + bytes(4096))
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": f"{REPO}:{REPO / 'protos'}",
           "LLM_ENGINE": "local", "LLM_EMBEDDED_MODEL": QWEN_05B.name, "LLM_MODEL_PATH": "",
           "LLM_PORT": str(free_port()), "LLM_METRICS_PORT": str(free_port())}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "services.llm"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert f"is not {QWEN_05B.title}: its sha256 is" in done.stderr, done.stderr
    assert f"expected {QWEN_05B.sha256}" in done.stderr
