"""``python -m services.gateway`` as a container runs it: ready on its ports, gone cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from harness.speech import REPO


def test_sigterm_stops_every_listener_and_exits_0() -> None:
    env = {
        **os.environ,
        "GATEWAY_HTTP_PORT": "0",
        "GATEWAY_WYOMING_STT_PORT": "0",
        "GATEWAY_WYOMING_TTS_PORT": "0",
        "GATEWAY_HOST": "127.0.0.1",
        "STT_ADDRESS": "127.0.0.1:9",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(json.loads(line))
            if lines[-1]["msg"] == "ready":
                break
        ready = lines[-1]
        assert ready["msg"] == "ready" and ready["stt"] == "127.0.0.1:9" and ready["llm"] == "llm:50052"
        assert all(ready[port] > 0 for port in ("http_port", "wyoming_stt_port", "wyoming_tts_port"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert json.loads(process.stderr.readlines()[-1])["msg"] == "stopped"
    finally:
        process.kill()
