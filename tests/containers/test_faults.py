"""Each service restarted at the worst moments of a spoken conversation: nothing lost, nothing said twice.

Nine cases: STT, LLM and TTS each killed and started again while the user is
silent, while the user speaks, and while the agent is replying. The edge client
runs on a file in real time, as a user would run it.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.containers.conftest import compose
from tests.edge import command, read_session, silence
from tests.speech import REPO, english, wer

MAX_CLIP_WER = 0.3
LEAD_S = 2.0  # silence before the first utterance
GAP_S = 14.0  # between the utterances: room for the first reply
# Past a restart, a turn waits at most this much longer (the brief's bound: restart time + 3 s).
SLACK_S = 3.0

CASES = [
    (service, moment) for service in ("stt", "llm", "tts") for moment in ("silent", "speaking", "replying")
]


def restart(service: str) -> float:
    """Kill the service's container and start it again; seconds until it is SERVING."""
    started = time.monotonic()
    compose("kill", service)
    compose("up", "-d", "--wait", service)
    return time.monotonic() - started


@pytest.mark.parametrize(("service", "moment"), CASES)
def test_a_restart_loses_nothing_and_repeats_nothing(
    stack: None, tmp_path: Path, service: str, moment: str
) -> None:
    first, second = english()[1], english()[4]
    pcm = silence(LEAD_S) + first.pcm() + silence(GAP_S) + second.pcm() + silence(1.0)
    first_end = LEAD_S + first.duration_s
    fault_at = {"silent": 0.5, "speaking": LEAD_S + first.duration_s / 2, "replying": first_end + 2.5}[moment]
    proc = subprocess.Popen(
        command(tmp_path, pcm, "--max-tokens", "40"), cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    listening = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "listening" in line:
                listening.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert listening.wait(60), "".join(lines)
        time.sleep(fault_at)  # the file is fed in real time from here
        restart_s = restart(service)
        proc.wait(timeout=240)
    finally:
        proc.kill()
        reader.join(5)
    stderr = "".join(lines)
    assert proc.returncode == 0, stderr
    session = read_session(tmp_path / "out.wav", tmp_path / "turns.jsonl", stderr)

    # Every utterance has exactly one reply, in order, and the client said what happened.
    assert len(session.turns) == 2, stderr
    assert stderr.count("AI: ") == 2, stderr
    for turn, rec in zip(session.turns, (first, second), strict=True):
        assert wer(rec.text, str(turn["user_text"])) <= MAX_CLIP_WER, turn
        t = turn["t_ms"]
        assert isinstance(t, dict)
        if "error" in turn:
            # Only a chat service lost in the middle of a reply may end it early, with what was said.
            assert (service, moment) == ("llm", "replying") and "chat service" in str(turn["error"]), turn
        else:
            assert str(turn["agent_text"]).strip() and "first_audio" in t, turn
            assert t["first_audio"] - t["speech_end"] <= (restart_s + SLACK_S) * 1000, (turn, restart_s)
    assert f"the {service} service" in stderr, stderr
