"""TTS latency: replies streamed token by token as an LLM sends them, timed to first audio.

    python -m bench.tts.run [--passes 3] [--tokens-per-s 40] [--streams 1]

(from the repository root, with the project installed or PYTHONPATH=.:protos).

Starts the service in-process on a free port with the default engine (TTS_* settings
apply), prints a table and writes ``bench/results/tts.png`` and ``tts.json``.

- first audio after clause: from sending the token that completes the first clause
  (so the service can know it is complete) to receiving the first audio chunk.
- first audio after first token: the same, from the reply's first token.
- real-time factor: unary Synthesize wall time / seconds of audio, per reply.
- stalls: with playback starting at the first chunk, how late any chunk arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import matplotlib
import numpy as np
from rich.console import Console
from rich.table import Table

from services.common.server import build_server
from services.tts.config import TtsSettings
from services.tts.engine import create_engine
from services.tts.servicer import SERVICE_NAME, TtsServicer
from services.tts.text import Chunker
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent.parent / "results"
SAMPLE_RATE_HZ = 16000
TARGET_FIRST_AUDIO_S = 0.25

REPLIES = [
    "Sure, I can help with that. The meeting is set for Tuesday at three, in the main room.",
    "Hello! It's nice to hear from you again. How was your trip to the mountains?",
    "Well, that depends on a few things, like your budget and how much time you have.",
    "The capital of France is Paris. It has been the capital for more than a thousand years.",
    "Okay, here's a quick recipe: boil the pasta, fry the garlic in olive oil, then mix them together.",
    "I'm sorry, I didn't catch that. Could you say it again, a little more slowly?",
    "Great question! Photosynthesis is how plants turn sunlight, water and air into sugar.",
    "Yes, the train leaves at 7:45 am and arrives just before noon, so you will have plenty of time.",
    "No problem. I've added milk, eggs and bread to your shopping list for tomorrow.",
    "Right, so the first step is to unplug the router, wait thirty seconds, and plug it back in.",
]


def tokens(text: str) -> list[str]:
    """Roughly how an LLM tokenises: words with their leading space, punctuation apart."""
    return re.findall(r" ?[A-Za-z']+| ?\d+|[^\sA-Za-z\d]| ", text)


@dataclass
class Run:
    reply: int
    first_audio_after_clause_s: float
    first_audio_after_first_token_s: float
    audio_s: float
    chunks: int
    max_stall_s: float
    chunk_gaps_s: list[float]


async def stream_reply(stub: tts_pb2_grpc.TtsServiceStub, index: int, token_interval_s: float) -> Run:
    parts = tokens(REPLIES[index])
    # The token after which the service's chunker has its first piece complete.
    chunker = Chunker()
    clause_token = next((i for i, token in enumerate(parts) if chunker.push(token)), len(parts) - 1)
    sent_at: list[float] = []

    async def requests() -> AsyncIterator[tts_pb2.StreamingSynthesizeRequest]:
        config = tts_pb2.SynthesisConfig(sample_rate_hz=SAMPLE_RATE_HZ)
        yield tts_pb2.StreamingSynthesizeRequest(config=config)
        for token in parts:
            sent_at.append(time.perf_counter())
            yield tts_pb2.StreamingSynthesizeRequest(text=token)
            await asyncio.sleep(token_interval_s)

    arrivals: list[tuple[float, int]] = []
    async for response in stub.StreamingSynthesize(requests()):
        if response.HasField("audio"):
            arrivals.append((time.perf_counter(), len(response.audio.audio_content) // 2))
    first = arrivals[0][0]
    # Playback starts with the first chunk; each later chunk is due when the audio before it ends.
    played = 0
    stalls = []
    for arrived, samples in arrivals:
        due = first + played / SAMPLE_RATE_HZ
        stalls.append(max(0.0, arrived - due))
        played += samples
    return Run(
        reply=index,
        first_audio_after_clause_s=first - sent_at[clause_token],
        first_audio_after_first_token_s=first - sent_at[0],
        audio_s=played / SAMPLE_RATE_HZ,
        chunks=len(arrivals),
        max_stall_s=max(stalls),
        chunk_gaps_s=[b[0] - a[0] for a, b in itertools.pairwise(arrivals)],
    )


async def real_time_factors(stub: tts_pb2_grpc.TtsServiceStub) -> list[float]:
    factors = []
    for reply in REPLIES:
        started = time.perf_counter()
        response = await stub.Synthesize(tts_pb2.SynthesizeRequest(text=reply))
        factors.append((time.perf_counter() - started) / (response.duration_ms / 1000))
    return factors


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def report(runs: list[Run], factors: list[float], args: argparse.Namespace) -> dict[str, float]:
    clause = [r.first_audio_after_clause_s for r in runs]
    first_token = [r.first_audio_after_first_token_s for r in runs]
    stalls = [r.max_stall_s for r in runs]
    gaps = [gap for r in runs for gap in r.chunk_gaps_s]
    summary = {
        "first_audio_after_clause_p50_s": percentile(clause, 50),
        "first_audio_after_clause_p95_s": percentile(clause, 95),
        "first_audio_after_first_token_p50_s": percentile(first_token, 50),
        "first_audio_after_first_token_p95_s": percentile(first_token, 95),
        "real_time_factor_p50": percentile(factors, 50),
        "real_time_factor_p95": percentile(factors, 95),
        "max_stall_p50_s": percentile(stalls, 50),
        "max_stall_p95_s": percentile(stalls, 95),
        "chunk_gap_p50_s": percentile(gaps, 50),
        "chunk_gap_p95_s": percentile(gaps, 95),
    }
    title = f"TTS: {len(runs)} streamed replies, {args.tokens_per_s:g} tokens/s, {args.streams} at once"
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    rows = [
        ("first audio after first complete clause (ms)", clause, 1000),
        ("first audio after first token (ms)", first_token, 1000),
        ("real-time factor (unary)", factors, 1),
        ("worst playback stall per reply (ms)", stalls, 1000),
        ("gap between chunks (ms)", gaps, 1000),
    ]
    for name, values, scale in rows:
        fmt = "{:.0f}" if scale == 1000 else "{:.3f}"
        table.add_row(
            name, fmt.format(percentile(values, 50) * scale), fmt.format(percentile(values, 95) * scale)
        )
    console = Console()
    console.print(table)
    verdict = "meets" if summary["first_audio_after_clause_p50_s"] <= TARGET_FIRST_AUDIO_S else "misses"
    console.print(f"p50 first audio after clause {verdict} the {TARGET_FIRST_AUDIO_S * 1000:.0f} ms target")
    return summary


def plot(runs: list[Run], factors: list[float], path: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    clause = sorted(r.first_audio_after_clause_s * 1000 for r in runs)
    left.plot(clause, np.linspace(0, 1, len(clause)), label="after first clause")
    first_token = sorted(r.first_audio_after_first_token_s * 1000 for r in runs)
    left.plot(first_token, np.linspace(0, 1, len(first_token)), label="after first token")
    left.axvline(TARGET_FIRST_AUDIO_S * 1000, color="grey", linestyle="--", label="target")
    left.set(xlabel="time to first audio (ms)", ylabel="fraction of replies", title="Time to first audio")
    left.legend()
    right.bar(range(len(factors)), factors)
    right.set(xlabel="reply", ylabel="synthesis time / audio time", title="Real-time factor (unary)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


async def main(args: argparse.Namespace) -> None:
    settings = TtsSettings(host="127.0.0.1", port=0, metrics_port=0)
    engine = create_engine(settings)
    servicer = TtsServicer(engine, settings)
    server = await build_server(
        settings, lambda s: tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, s), [SERVICE_NAME]
    )
    await asyncio.to_thread(engine.load)
    await server.set_ready()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = tts_pb2_grpc.TtsServiceStub(channel)
            await stream_reply(stub, 0, 0.0)  # warm the connection and the code paths
            runs: list[Run] = []
            interval = 1 / args.tokens_per_s
            for _ in range(args.passes):
                for start in range(0, len(REPLIES), args.streams):
                    batch = range(start, min(start + args.streams, len(REPLIES)))
                    runs += await asyncio.gather(*(stream_reply(stub, i, interval) for i in batch))
            factors = await real_time_factors(stub)
    finally:
        await server.stop(0)
    summary = report(runs, factors, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(runs, factors, RESULTS / "tts.png")
    (RESULTS / "tts.json").write_text(
        json.dumps(
            {"args": vars(args), "summary": summary, "real_time_factors": factors}
            | {"runs": [asdict(r) for r in runs]},
            indent=2,
        )
    )
    print(f"wrote {RESULTS / 'tts.png'} and {RESULTS / 'tts.json'}")
    print(f"median audio per reply: {statistics.median(r.audio_s for r in runs):.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3, help="times each reply is streamed")
    parser.add_argument("--tokens-per-s", type=float, default=40.0, help="how fast the fake LLM sends tokens")
    parser.add_argument("--streams", type=int, default=1, help="replies streamed at once")
    asyncio.run(main(parser.parse_args()))
