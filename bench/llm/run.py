"""Time to first token and tokens/s over a 10-turn conversation on the embedded model.

Runs the real service in process (a grpc.aio server on a free port, the local engine)
and measures from the client: ``python -m bench.llm.run [--conversations N]``.
Targets: first token within 250 ms (p50) and turn 10 no more than 20% slower than turn 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from services.common.server import build_server
from services.llm.config import LlmSettings
from services.llm.engine import create_engine
from services.llm.servicer import SERVICE_NAME, LlmServicer
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

RESULTS = Path(__file__).resolve().parents[1] / "results"
TTFT_TARGET_MS = 250.0
TURN_10_SLOWDOWN_LIMIT = 1.2
QUESTIONS = [
    "Hi! How are you today?",
    "What is a good name for a cat?",
    "Why is the sky blue?",
    "Can you suggest something to cook for dinner?",
    "How far away is the moon?",
    "What should I read this weekend?",
    "Tell me a fun fact about octopuses.",
    "How do I keep a plant alive indoors?",
    "What is the capital of Canada?",
    "Thanks! Any tip for sleeping better?",
]


@dataclass(frozen=True)
class Turn:
    conversation: int
    turn: int
    ttft_ms: float  # from sending the user turn to the first delta, at the client
    tokens_per_second: float
    prompt_tokens: int
    completion_tokens: int


async def converse(stub: llm_pb2_grpc.LlmServiceStub, index: int, turns: int, max_tokens: int) -> list[Turn]:
    call = stub.StreamingChat()
    await call.write(llm_pb2.StreamingChatRequest(config=llm_pb2.ChatConfig(max_tokens=max_tokens)))
    results = []
    for number in range(1, turns + 1):
        # Each conversation starts on a different question, as real ones do: no two
        # conversations share a prompt beyond the system prompt.
        text = QUESTIONS[(index + number - 1) % len(QUESTIONS)]
        sent = time.perf_counter()
        await call.write(llm_pb2.StreamingChatRequest(user_turn=llm_pb2.UserTurn(text=text)))
        first: float | None = None
        while True:
            response = await call.read()
            assert response is not grpc.aio.EOF
            if response.HasField("delta"):
                first = first or time.perf_counter()
                continue
            end = response.turn_end
            break
        if end.finish_reason == llm_pb2.FINISH_REASON_ERROR:
            raise RuntimeError(end.error.message)
        ttft_ms = ((first or time.perf_counter()) - sent) * 1000
        results.append(
            Turn(
                index,
                number,
                ttft_ms,
                end.timings.tokens_per_second,
                end.usage.prompt_tokens,
                end.usage.completion_tokens,
            )
        )
    await call.done_writing()
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(turns: list[Turn], number: int) -> dict[str, float]:
    chosen = [t for t in turns if t.turn == number]
    ttft = [t.ttft_ms for t in chosen]
    return {
        "turn": number,
        "ttft_p50_ms": percentile(ttft, 0.5),
        "ttft_p95_ms": percentile(ttft, 0.95),
        "tokens_per_second": statistics.median(t.tokens_per_second for t in chosen),
        "prompt_tokens": statistics.median(t.prompt_tokens for t in chosen),
    }


def print_table(rows: list[dict[str, float]], verdicts: list[str]) -> None:
    headers = ["turn", "TTFT p50 ms", "TTFT p95 ms", "tokens/s p50", "prompt tokens"]
    cells = [
        [
            f"{r['turn']:.0f}",
            f"{r['ttft_p50_ms']:.0f}",
            f"{r['ttft_p95_ms']:.0f}",
            f"{r['tokens_per_second']:.0f}",
            f"{r['prompt_tokens']:.0f}",
        ]
        for r in rows
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("  ".join(f"{h:>14}" for h in headers))
        for row in cells:
            print("  ".join(f"{c:>14}" for c in row))
        for verdict in verdicts:
            print(verdict)
        return
    table = Table(title="LLM service, embedded model")
    for header in headers:
        table.add_column(header, justify="right")
    for row in cells:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for verdict in verdicts:
        console.print(verdict)


def plot(turns: list[Turn], count: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers = list(range(1, count + 1))
    p50 = [percentile([t.ttft_ms for t in turns if t.turn == n], 0.5) for n in numbers]
    p95 = [percentile([t.ttft_ms for t in turns if t.turn == n], 0.95) for n in numbers]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(numbers, p50, marker="o", label="p50")
    axes.plot(numbers, p95, marker="o", linestyle="--", label="p95")
    axes.axhline(TTFT_TARGET_MS, color="grey", linewidth=1, label=f"target {TTFT_TARGET_MS:.0f} ms")
    axes.set_xlabel("turn of the conversation")
    axes.set_ylabel("time to first token (ms)")
    axes.set_xticks(numbers)
    axes.set_ylim(bottom=0)
    axes.legend()
    axes.set_title("Time to first token by turn (embedded SmolLM2-135M)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=60)
    args = parser.parse_args()

    settings = LlmSettings(host="127.0.0.1", port=0, metrics_port=0, engine="local", fallback="")
    engine = create_engine(settings)
    servicer = LlmServicer(engine, settings)
    server = await build_server(
        settings, lambda s: llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, s), [SERVICE_NAME]
    )
    await asyncio.to_thread(engine.load)
    await server.set_ready()
    turns: list[Turn] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = llm_pb2_grpc.LlmServiceStub(channel)
            for index in range(args.conversations):
                turns += await converse(stub, index, args.turns, args.max_tokens)
    finally:
        await server.stop(0)

    rows = [summarise(turns, 1), summarise(turns, args.turns)]
    first, last = rows
    slowdown = last["ttft_p50_ms"] / first["ttft_p50_ms"]
    verdicts = [
        f"turn 1 first token p50 {first['ttft_p50_ms']:.0f} ms: "
        + ("meets" if first["ttft_p50_ms"] <= TTFT_TARGET_MS else "misses")
        + f" the {TTFT_TARGET_MS:.0f} ms target",
        f"turn {args.turns} / turn 1 first token p50: {slowdown:.2f}x: "
        + ("meets" if slowdown <= TURN_10_SLOWDOWN_LIMIT else "misses")
        + f" the {TURN_10_SLOWDOWN_LIMIT:.1f}x limit",
    ]
    print_table(rows, verdicts)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(turns, args.turns, RESULTS / "llm_ttft.png")
    (RESULTS / "llm.json").write_text(
        json.dumps({"summary": rows, "turns": [asdict(t) for t in turns]}, indent=1) + "\n"
    )
    print(f"wrote {RESULTS / 'llm_ttft.png'} and {RESULTS / 'llm.json'}")


if __name__ == "__main__":
    asyncio.run(main())
