"""Tool calls: are they right, and how soon is something heard while a slow one works.

Accuracy: the 20 tool requests of ``bench.llm.quality_set`` through the LLM service, as text
(``--mode text``) or as speech (``--mode speech``: each request synthesized by the TTS service,
not recorded, then heard by the STT service, and what it heard asked). A request is right when
the turn ends in one call of the right tool with the right arguments. Each model runs in the
real service, in process (a grpc.aio server on a free port, the local engine): each request is
a new StreamingChat with the five tools in its config, as the conversation core sends it.
Measured from the client: the call, ms to its first piece, ms to the turn's end.

A slow tool (``--slow N``, 0 for none): N spoken order questions (synthesized by the TTS
service), each a conversation on the real core, in real time, with the STT, LLM and TTS services
in process and the test MCP server (tests/mcp_orders.py over stdio, every call 1.5 s). From the
end of the question's speech (its last 10 ms above -35 dBFS) to the call written (the LLM
service ending the model's turn with it), the first audio of the filler heard, and of the answer
heard: "heard" is when the TTS service delivered it (harness/tap.py);
the filler is what was delivered before the tool's result reached the LLM service, the answer
what came after.

``python -m bench.tools.run [--models qwen2.5-coder-1.5b ...] [--mode text|speech] [--slow 5] [--threads 2]``
(``--slow`` alone: only the slow tool)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from bench.e2e.run import SPEECH_DBFS
from bench.llm.quality_set import TOOL_REQUESTS, TOOLS, ToolRequest, call_is_right
from bench.llm.run import percentile
from conversation.tools import Tools, open_tools
from edge_client.config import EdgeSettings
from foundation.audio import RATE_HZ, pcm16_to_float
from harness import servers
from harness.edge import converse, loud_windows_ms, silence, then_quiet
from harness.speech import REPO
from harness.spoken import heard, said
from harness.tap import STREAMING_CHAT, Taps, tapped
from services.llm.models import MODELS, QWEN_15B
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

RESULTS = REPO / "bench" / "results"
Request = llm_pb2.StreamingChatRequest
TOOL_SET = llm_pb2.ToolSet(
    tools=[
        llm_pb2.Tool(
            name=t["function"]["name"],
            description=t["function"]["description"],
            parameters_json=json.dumps(t["function"]["parameters"]),
        )
        for t in TOOLS
    ],
    tool_choice="auto",
)
# Orders the test MCP server knows (tests/data/tools/orders.json), asked as a customer would.
SLOW_QUESTIONS = [
    "What is the status of order 42?",
    "Where is my order 4217?",
    "Has order 3550 arrived yet?",
    "Can you check order 1009 for me?",
    "What's happening with order 42?",
]
SLOW_TOOL_S = 1.5
PROMPT = (
    "You are the voice assistant of a shop, speaking with a customer. Use the tools for order "
    "statuses. Answer in one short sentence."
)


@dataclass(frozen=True)
class Ears:
    """The TTS and STT services (``host:port``) that say a request and hear it."""

    stt: str
    tts: str


@asynccontextmanager
async def ears() -> AsyncIterator[Ears]:
    async with servers.stt_server() as stt, servers.tts_server() as tts:
        yield Ears(f"127.0.0.1:{stt.port}", f"127.0.0.1:{tts.port}")


async def say(ears: Ears, text: str) -> bytes:
    """``text`` as the TTS service says it, 16 kHz PCM."""
    async with grpc.aio.insecure_channel(ears.tts) as channel:
        return await said(tts_pb2_grpc.TtsServiceStub(channel), text, RATE_HZ)


async def ask_in_text(stub: llm_pb2_grpc.LlmServiceStub, request: ToolRequest) -> dict[str, Any]:
    """One request in a new conversation; the calls the turn ends with."""
    call = stub.StreamingChat()
    await call.write(Request(config=llm_pb2.ChatConfig(max_tokens=80, temperature=0, tools=TOOL_SET)))
    sent = time.perf_counter()
    await call.write(Request(user_turn=llm_pb2.UserTurn(text=request.text, turn_id=1)))
    first_piece: float | None = None
    text = ""
    calls: list[llm_pb2.ToolCall] = []
    while True:
        response = await call.read()
        if response is grpc.aio.EOF:
            raise RuntimeError("the stream ended before the turn did")
        if response.HasField("tool_call"):
            first_piece = first_piece or time.perf_counter()
        elif response.HasField("error"):
            raise RuntimeError(response.error.message)
        elif response.HasField("turn_end"):
            text, calls = response.turn_end.text, list(response.turn_end.tool_calls)
            if response.turn_end.finish_reason == llm_pb2.FINISH_REASON_ERROR:
                raise RuntimeError(response.turn_end.error.message)
            break
    ended = time.perf_counter()
    call.cancel()
    name, arguments = (calls[0].name, calls[0].arguments_json) if len(calls) == 1 else ("", "")
    return {
        "request": request.text,
        "calls": [{"name": c.name, "arguments": c.arguments_json} for c in calls],
        "text": text,
        "right": len(calls) == 1 and call_is_right(request, name, arguments),
        "first_piece_ms": ((first_piece or ended) - sent) * 1000,
        "turn_ms": (ended - sent) * 1000,
    }


async def ask_in_speech(
    stub: llm_pb2_grpc.LlmServiceStub, request: ToolRequest, ears: Ears | None
) -> dict[str, Any]:
    """``request`` said by the TTS service, heard by the STT service, and what it heard asked."""
    assert ears is not None
    async with grpc.aio.insecure_channel(ears.stt) as channel:
        words = await heard(stt_pb2_grpc.SttServiceStub(channel), await say(ears, request.text), RATE_HZ)
    answer = await ask_in_text(stub, replace(request, text=words))
    return {**answer, "request": request.text, "heard": words}


Mode = Callable[[llm_pb2_grpc.LlmServiceStub, ToolRequest, Ears | None], Awaitable[dict[str, Any]]]
MODES: dict[str, Mode] = {
    "text": lambda stub, request, _: ask_in_text(stub, request),
    "speech": ask_in_speech,
}


async def measure(name: str, threads: int, mode: Mode, ears: Ears | None) -> dict[str, Any]:
    answers = []
    async with (
        servers.llm_server(name, threads) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = llm_pb2_grpc.LlmServiceStub(channel)
        for i, request in enumerate(TOOL_REQUESTS, 1):
            answer = await mode(stub, request, ears)
            mark = "right" if answer["right"] else "wrong"
            heard_as = f" (heard {answer['heard']!r})" if "heard" in answer else ""
            got = answer["calls"] or answer["text"][:60]
            print(
                f"[{i}/{len(TOOL_REQUESTS)}] {name}: {request.text}{heard_as} -> {got!r} {mark}",
                file=sys.stderr,
            )
            answers.append(answer)
    return {
        "model": name,
        "right": sum(a["right"] for a in answers),
        "requests": len(answers),
        "first_piece_p50_ms": percentile([a["first_piece_ms"] for a in answers], 0.5),
        "turn_p50_ms": percentile([a["turn_ms"] for a in answers], 0.5),
        "turn_p95_ms": percentile([a["turn_ms"] for a in answers], 0.95),
        "answers": answers,
    }


@dataclass
class SlowCall:
    """One spoken question answered by a slow tool, times from the end of its speech."""

    question: str
    user_text: str = ""
    calls: list[str] | None = None
    fillers: list[str] | None = None
    call_ms: float | None = None  # the LLM service ended the model's turn with the tool call
    filler_ms: float | None = None  # first audio of what was said while the tool worked
    answer_ms: float | None = None  # first audio of what was said after its result
    speech_end_ms: float = 0.0  # on the conversation's clock, as the report's times
    report: dict[str, Any] | None = None  # the conversation's report of the turn
    error: str = ""


def slow_mcp_config(tmp: Path) -> str:
    """The test MCP server offering ``order_status``, each call ``SLOW_TOOL_S`` long."""
    server = {"command": sys.executable, "args": [str(REPO / "tests" / "mcp_orders.py")]}
    env = {"TOOLS": "order_status", "DELAY_S": str(SLOW_TOOL_S)}
    (path := tmp / "mcp.json").write_text(json.dumps({"mcpServers": {"orders": {**server, "env": env}}}))
    return str(path)


def moments(taps: Taps, turn_id: int) -> tuple[float | None, float | None, float | None]:
    """When (time.monotonic()) the LLM service ended the model's turn with a tool call, and
    the TTS service the first audio of the turn said before the call's result reached the LLM
    service (the filler), and the first said after it (the answer)."""
    call = result = None
    for m in taps.llm.messages:
        if m.method != STREAMING_CHAT:
            continue
        if m.from_client and result is None and Request.FromString(m.data).HasField("tool_result"):
            result = m.at_s
        response = None if m.from_client else llm_pb2.StreamingChatResponse.FromString(m.data)
        if call is None and response is not None and response.turn_end.tool_calls:
            call = m.at_s
    filler = answer = None
    start = 0
    for piece in taps.tts.pieces(turn_id) if result is not None else []:
        at = taps.tts.delivered_at(turn_id, start) if len(piece.samples) else None
        start += len(piece.samples)
        if at is not None and result is not None and at < result:
            filler = filler or at
        elif at is not None and answer is None:
            answer = at
    return call, filler, answer


async def slow_call(settings: EdgeSettings, tools: Tools, question: str, pcm: bytes) -> SlowCall:
    speech_end_ms = float(loud_windows_ms(pcm16_to_float(pcm), RATE_HZ, SPEECH_DBFS)[-1] + 10)
    outcome = SlowCall(question, speech_end_ms=speech_end_ms)
    async with tapped(settings) as (settings, taps):
        with tempfile.TemporaryDirectory() as tmp:
            _, session = await converse(
                settings, Path(tmp), then_quiet(pcm + silence(1.0), 60), timeout_s=300, tools=tools
            )
    if not session.turns:
        outcome.error = "no turn"
        return outcome
    turn: Any = session.turns[0]  # the conversation's report of the turn
    outcome.report = turn
    outcome.user_text = turn["user_text"]
    outcome.calls = [f"{t['name']}({json.dumps(t['arguments'])})" for t in turn.get("tools", [])]
    outcome.fillers = turn.get("fillers", [])
    call, filler, answer = moments(taps, taps.llm.turn_id(outcome.user_text))
    outcome.call_ms, outcome.filler_ms, outcome.answer_ms = (
        None if at is None else session.ms_at(at) - speech_end_ms for at in (call, filler, answer)
    )
    if not outcome.calls:
        outcome.error = "no call"
    return outcome


async def slow_calls(name: str, threads: int, ears: Ears, number: int) -> dict[str, Any]:
    questions = (SLOW_QUESTIONS * number)[:number]
    outcomes: list[SlowCall] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with servers.llm_server(name, threads) as llm:
            settings = EdgeSettings(
                stt=ears.stt, llm=f"127.0.0.1:{llm.port}", tts=ears.tts, system_prompt=PROMPT,
                temperature=0.0, mcp_config=slow_mcp_config(Path(tmp)),
            )  # fmt: skip
            async with open_tools(settings, lambda problem: print(problem, file=sys.stderr)) as tools:
                assert tools is not None, "the test MCP server did not start"
                for i, question in enumerate(questions, 1):
                    outcome = await slow_call(settings, tools, question, await say(ears, question))
                    times = ", ".join(
                        f"{key} {_ms(getattr(outcome, key + '_ms'))} ms"
                        for key in ("call", "filler", "answer")
                    )
                    print(
                        f"[{i}/{number}] {name}: {question} (heard {outcome.user_text!r}) -> {outcome.calls} "
                        f"fillers {outcome.fillers}: {times} {outcome.error}",
                        file=sys.stderr,
                    )
                    outcomes.append(outcome)
    summary: dict[str, Any] = {
        "model": name,
        "conversations": len(outcomes),
        "called": sum(bool(o.calls) for o in outcomes),
    }
    for key in ("call", "filler", "answer"):
        values = [v for o in outcomes if (v := getattr(o, f"{key}_ms")) is not None]
        for q in (50, 95):
            summary[f"{key}_p{q}_ms"] = percentile(values, q / 100) if values else None
    return {
        **summary,
        "outcomes": [asdict(o) for o in outcomes],
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def accuracy_table(mode: str, rows: list[dict[str, Any]]) -> Table:
    title = "Tool calls right, as text" if mode == "text" else (
        "Tool calls right, as speech (synthesized by the TTS service, heard by the STT service)"
    )  # fmt: skip
    table = Table(title=title)
    for column in (
        "model",
        "right tool and arguments",
        "first call piece p50 ms",
        "turn p50 ms",
        "turn p95 ms",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        table.add_row(r["model"], f"{r['right']}/{r['requests']}", _ms(r["first_piece_p50_ms"]),
                      _ms(r["turn_p50_ms"]), _ms(r["turn_p95_ms"]))  # fmt: skip
    return table


def slow_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"A slow tool ({SLOW_TOOL_S} s), spoken questions: from the end of speech, ms")
    table.add_column("model")
    for column in (
        "called the tool",
        "call p50",
        "p95",
        "filler heard p50",
        "p95",
        "answer heard p50",
        "p95",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        times = [_ms(r[f"{key}_p{q}_ms"]) for key in ("call", "filler", "answer") for q in (50, 95)]
        table.add_row(r["model"], f"{r['called']}/{r['conversations']}", *times)
    return table


def plot(rows: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 * len(rows) + 1.8))
    for y, r in enumerate(rows):
        for key, color, label in (
            ("call_ms", "tab:gray", "tool call written"),
            ("filler_ms", "tab:orange", "filler heard"),
            ("answer_ms", "tab:blue", "answer heard"),
        ):
            xs = [o[key] for o in r["outcomes"] if o[key] is not None]
            ax.scatter(xs, [y] * len(xs), color=color, label=label if y == 0 else None)
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows])
    ax.set_xlabel(f"ms from the end of the question's speech (tool takes {SLOW_TOOL_S} s)")
    ax.legend()
    fig.tight_layout()
    path = RESULTS / "tools_slow.png"
    fig.savefig(path, dpi=120)
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=[QWEN_15B.name])
    parser.add_argument("--mode", choices=list(MODES), help="text unless only --slow is asked")
    parser.add_argument("--slow", type=int, default=0, help="this many spoken conversations with a slow tool")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    console = Console(width=None if sys.stdout.isatty() else 140)
    RESULTS.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        heard_by = await stack.enter_async_context(ears()) if args.mode == "speech" or args.slow else None
        mode = args.mode or ("" if args.slow else "text")
        if mode:
            rows = [await measure(name, args.threads, MODES[mode], heard_by) for name in args.models]
            console.print(accuracy_table(mode, rows))
            path = RESULTS / f"tools_{mode}.json"
            path.write_text(json.dumps({"mode": mode, "load": load, "models": rows}, indent=1) + "\n")
            print(f"wrote {path}")
        if args.slow and heard_by is not None:
            slow = [await slow_calls(name, args.threads, heard_by, args.slow) for name in args.models]
            console.print(slow_table(slow))
            path = RESULTS / "tools_slow.json"
            path.write_text(json.dumps({"load": load, "models": slow}, indent=1) + "\n")
            print(f"wrote {path} and {plot(slow)}")
    after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average before the run: {' '.join(load)}; after: {' '.join(after)}")


if __name__ == "__main__":
    asyncio.run(main())
