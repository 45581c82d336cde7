"""A long session stays flat: what a conversation keeps per turn is let go when the turn is
reported, so after 200 turns the edge client holds about the memory it held after 20, though
every reply's audio went through it.

The real chat model and voice serve the edge client (a process of its own, typing its turns,
recording the replies to a WAV as fast as they come); its resident memory is read from /proc.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import wave
from pathlib import Path

from harness.servers import running_server
from harness.speech import REPO
from services.llm.config import LlmSettings
from services.llm.engines.local import LocalEngine
from services.llm.servicer import SERVICE_NAME as LLM_SERVICE
from services.llm.servicer import LlmServicer
from services.tts.config import TtsSettings
from services.tts.engine import create_engine as create_tts_engine
from services.tts.servicer import SERVICE_NAME as TTS_SERVICE
from services.tts.servicer import TtsServicer
from voice.llm.v1 import llm_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

TURNS, EARLY = 200, 20
# Growth allowed between turn EARLY and turn TURNS: allocator noise and the text the chat
# link mirrors. Keeping each reply's audio (~1.5 s here, 66 KB at 22.05 kHz), as the core
# once did, grows ~12 MB here.
MAX_GROWTH_MB = 4.0


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def reported(path: Path) -> list[dict[str, object]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


async def test_memory_after_200_turns_is_that_after_20(tmp_path: Path) -> None:
    llm_settings = LlmSettings(engine="local")
    llm = LocalEngine(llm_settings)
    tts_settings = TtsSettings()
    tts = create_tts_engine(tts_settings)
    llm_servicer, tts_servicer = LlmServicer(llm, llm_settings), TtsServicer(tts, tts_settings)
    add_llm = lambda server: llm_pb2_grpc.add_LlmServiceServicer_to_server(llm_servicer, server)  # noqa: E731
    add_tts = lambda server: tts_pb2_grpc.add_TtsServiceServicer_to_server(tts_servicer, server)  # noqa: E731
    report, output = tmp_path / "turns.jsonl", tmp_path / "out.wav"
    async with (
        running_server(llm_settings, add_llm, [LLM_SERVICE], llm.load) as llm_server,
        running_server(tts_settings, add_tts, [TTS_SERVICE], tts.load) as tts_server,
    ):
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_client", "--text", "--fast", "--output", str(output),
             "--report", str(report), "--max-tokens", "8",
             "--system-prompt", "Answer in one short sentence.",
             "--llm", f"127.0.0.1:{llm_server.port}", "--tts", f"127.0.0.1:{tts_server.port}"],
            cwd=REPO, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert agent.stdin is not None
        agent.stdin.write("".join(f"Tell me a fact about the number {n}.\n" for n in range(TURNS)))
        agent.stdin.flush()
        rss: dict[int, float] = {}
        deadline = time.monotonic() + 900
        while len(done := reported(report)) < TURNS and agent.poll() is None:
            assert time.monotonic() < deadline, f"{len(done)} turns in 900 s"
            if len(done) >= EARLY and EARLY not in rss:
                rss[EARLY] = resident_mb(agent.pid)
            await asyncio.sleep(0.2)
        rss[TURNS] = resident_mb(agent.pid)
        _, stderr = await asyncio.to_thread(agent.communicate, timeout=60)  # closes stdin: the end
    assert agent.returncode == 0, stderr
    assert len(done) == TURNS, stderr[-2000:]
    answered = [t for t in done if str(t["agent_text"]).strip() and "first_audio" in t["t_ms"]]  # type: ignore[operator]
    assert len(answered) == TURNS, [t for t in done if t not in answered][:3]
    with wave.open(str(output)) as w:
        spoken_s = w.getnframes() / w.getframerate()
    assert spoken_s >= TURNS * 0.5, spoken_s  # every reply's audio passed through the client
    growth = rss[TURNS] - rss[EARLY]
    print(f"resident memory: {rss[EARLY]:.1f} MB after {EARLY} turns, {rss[TURNS]:.1f} MB after {TURNS}")
    assert growth <= MAX_GROWTH_MB, rss
