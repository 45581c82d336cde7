"""Tool-call accuracy: the 20 tool requests of ``bench.llm.quality_set`` through the LLM
service, as text. A request is right when the turn ends in one call of the right tool with
the right arguments.

``python -m bench.tools.run [--models qwen2.5-coder-1.5b ...] [--threads 2]``

Each model runs in the real service, in process (a grpc.aio server on a free port, the
local engine): each request is a new StreamingChat with the five tools in its config, as
the conversation core sends it. Measured from the client: the call, ms to its first piece,
ms to the turn's end. The same requests spoken (end of speech -> filler heard -> answer
heard) plug in as another ``MODES`` entry, over the whole stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from bench.llm.quality_set import TOOL_REQUESTS, TOOLS, ToolRequest, call_is_right
from bench.llm.run import percentile
from services.common.server import build_server
from services.llm.config import LlmSettings
from services.llm.engine import create_engine
from services.llm.models import MODELS, QWEN_15B
from services.llm.servicer import SERVICE_NAME, LlmServicer
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

RESULTS = Path(__file__).resolve().parents[1] / "results"
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


Mode = Callable[[llm_pb2_grpc.LlmServiceStub, ToolRequest], Awaitable[dict[str, Any]]]
MODES: dict[str, Mode] = {"text": ask_in_text}


async def measure(name: str, threads: int, mode: Mode) -> dict[str, Any]:
    settings = LlmSettings(
        host="127.0.0.1", port=0, metrics_port=0, engine="local", fallback="", embedded_model=name,
        threads=threads,
    )  # fmt: skip
    engine = create_engine(settings)
    servicer = LlmServicer(engine, settings)
    server = await build_server(
        settings, lambda s: llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, s), [SERVICE_NAME]
    )
    await asyncio.to_thread(engine.load)
    await server.set_ready()
    answers = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = llm_pb2_grpc.LlmServiceStub(channel)
            for request in TOOL_REQUESTS:
                answer = await mode(stub, request)
                print(f"  {name}: {request.text} -> {answer['calls'] or answer['text'][:60]!r}", flush=True)
                answers.append(answer)
    finally:
        await server.stop(0)
    return {
        "model": name,
        "right": sum(a["right"] for a in answers),
        "requests": len(answers),
        "first_piece_p50_ms": percentile([a["first_piece_ms"] for a in answers], 0.5),
        "turn_p50_ms": percentile([a["turn_ms"] for a in answers], 0.5),
        "turn_p95_ms": percentile([a["turn_ms"] for a in answers], 0.95),
        "answers": answers,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=[QWEN_15B.name])
    parser.add_argument("--mode", choices=list(MODES), default="text")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    rows = [await measure(name, args.threads, MODES[args.mode]) for name in args.models]
    print("model | right tool and arguments | first call piece p50 ms | turn p50 ms | turn p95 ms")
    for r in rows:
        print(f"{r['model']} | {r['right']}/{r['requests']} | {r['first_piece_p50_ms']:.0f} | "
              f"{r['turn_p50_ms']:.0f} | {r['turn_p95_ms']:.0f}")  # fmt: skip
    print(f"mode {args.mode}; load average before the run: {' '.join(load)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"tools_{args.mode}.json"
    path.write_text(json.dumps({"mode": args.mode, "load": load, "models": rows}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
