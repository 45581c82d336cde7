"""How well each embedded chat model serves a spoken conversation: the 30 everyday
questions and 20 tool requests of ``bench.llm.quality_set``, with first token p50/p95,
tokens/s and memory.

``python -m bench.llm.quality [--models ...] [--threads 2] [--temperature 0]``

Each model runs in a process of its own (its peak RSS is its memory) on llama.cpp with
the service's settings (2,048-token context, the spoken-reply system prompt, already in
the KV cache as in the service) and its own chat template; the tools go through the
template's tool support (Qwen2.5: ``<tool_call>`` JSON; a template without tools gets
them described in the system prompt). This measures the models themselves; the tool
requests through the LLM service are ``bench.tools``.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.llm.quality_set import QUESTIONS, TOOL_REQUESTS, TOOLS, answer_holds, call_is_right
from bench.llm.run import percentile
from services.llm.config import DEFAULT_CONTEXT_TOKENS, DEFAULT_SYSTEM_PROMPT
from services.llm.models import MODELS, locate

RESULTS = Path(__file__).resolve().parents[1] / "results"
MAX_TOKENS = 80
# Qwen2.5's <tool_call> tags are special tokens, left out of the text: the call is the first
# JSON object that names a function.
_CALL_START = re.compile(r'\{\s*"name"\s*:')
# For a template that knows no tools: the same instructions Qwen2.5's template gives.
_TOOLS_IN_PROMPT = (
    "\n\nYou may call one or more functions to assist with the user query. The functions:\n{tools}\n"
    "For a function call, return a JSON object with the function name and arguments within "
    "<tool_call></tool_call> tags: "
    '<tool_call>{{"name": <function-name>, "arguments": <args-json-object>}}</tool_call>'
)


def measure(name: str, threads: int, temperature: float) -> dict[str, Any]:
    """Every question and tool request on one model, in this process."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from services.llm.engines.local import without_extra_buffers

    with without_extra_buffers():
        llama = llama_cpp.Llama(
            model_path=str(locate(name)),
            n_ctx=DEFAULT_CONTEXT_TOKENS,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
    template = str(llama.metadata["tokenizer.chat_template"])
    eos = llama.detokenize([llama.token_eos()], special=True).decode()
    formatter = Jinja2ChatFormatter(template, eos, "", add_generation_prompt=True)
    knows_tools = "tools" in template

    def prompt(text: str, tools: bool) -> str:
        system = DEFAULT_SYSTEM_PROMPT
        if tools and not knows_tools:
            system += _TOOLS_IN_PROMPT.format(tools="\n".join(json.dumps(t) for t in TOOLS))
        messages: Any = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        offered: Any = TOOLS if tools and knows_tools else None
        return formatter(messages=messages, tools=offered).prompt

    def complete(text: str, tools: bool) -> tuple[str, float, float]:
        """The reply, ms to its first token, and tokens/s after it."""
        started = time.perf_counter()
        first = 0.0
        pieces = []
        stream: Any = llama.create_completion(
            prompt(text, tools), max_tokens=MAX_TOKENS, temperature=temperature, stream=True, stop=[eos]
        )
        for chunk in stream:
            first = first or time.perf_counter()
            pieces.append(chunk["choices"][0]["text"])
        ended = time.perf_counter()
        rate = (len(pieces) - 1) / (ended - first) if len(pieces) > 1 else 0.0
        return "".join(pieces), (first - started) * 1000, rate

    # The system prompt into the KV cache, as the service does at load.
    complete("Hello", tools=False)
    complete("Hello", tools=True)
    answers: list[dict[str, Any]] = []
    for question in QUESTIONS:
        text, ttft, rate = complete(question.text, tools=False)
        answers.append({"question": question.text, "answer": text, "right": answer_holds(question, text),
                        "ttft_ms": ttft, "tokens_per_second": rate})  # fmt: skip
        print(f"  {name}: {question.text} -> {text.strip()[:90]!r}", file=sys.stderr, flush=True)
    calls: list[dict[str, Any]] = []
    for request in TOOL_REQUESTS:
        text, ttft, rate = complete(request.text, tools=True)
        call = parse_call(text)
        tool, arguments = str(call.get("name", "")), json.dumps(call.get("arguments", {}))
        calls.append({"request": request.text, "output": text, "tool": tool, "arguments": arguments,
                      "right": call_is_right(request, tool, arguments), "ttft_ms": ttft})  # fmt: skip
        print(f"  {name}: {request.text} -> {tool}({arguments})", file=sys.stderr, flush=True)
    ttfts = [a["ttft_ms"] for a in answers]
    rates = sorted(a["tokens_per_second"] for a in answers if a["tokens_per_second"])
    return {
        "model": name,
        "title": MODELS[name].title,
        "size_mb": MODELS[name].size_bytes / 1e6,
        "questions_right": sum(a["right"] for a in answers),
        "questions": len(answers),
        "tools_right": sum(c["right"] for c in calls),
        "tool_requests": len(calls),
        "ttft_p50_ms": percentile(ttfts, 0.5),
        "ttft_p95_ms": percentile(ttfts, 0.95),
        "tokens_per_second": percentile(rates, 0.5),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": threads,
        "temperature": temperature,
        "answers": answers,
        "calls": calls,
    }


def parse_call(text: str) -> dict[str, Any]:
    """The model's call as written: ``{"name": ..., "arguments": {...}}``; empty: none."""
    found = _CALL_START.search(text)
    if not found:
        return {}
    try:
        call, _ = json.JSONDecoder().raw_decode(text[found.start() :])
    except json.JSONDecodeError:
        return {}
    return call if isinstance(call, dict) else {}


def print_table(rows: list[dict[str, Any]], load: str) -> None:
    headers = [
        "model",
        "MB",
        "facts right",
        "tool calls right",
        "TTFT p50 ms",
        "TTFT p95 ms",
        "tokens/s",
        "RSS MB",
    ]
    cells = [
        [r["title"], f"{r['size_mb']:.0f}", f"{r['questions_right']}/{r['questions']}",
         f"{r['tools_right']}/{r['tool_requests']}", f"{r['ttft_p50_ms']:.0f}", f"{r['ttft_p95_ms']:.0f}",
         f"{r['tokens_per_second']:.0f}", f"{r['rss_mb']:.0f}"]
        for r in rows
    ]  # fmt: skip
    print(" | ".join(headers))
    for row in cells:
        print(" | ".join(row))
    print(f"load average before the run: {load}")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for row in rows:
        score = (row["questions_right"] + row["tools_right"]) / (row["questions"] + row["tool_requests"])
        axes.scatter(row["ttft_p50_ms"], 100 * score, s=row["rss_mb"] / 4, alpha=0.6)
        axes.annotate(row["title"].split(" ")[0], (row["ttft_p50_ms"], 100 * score), fontsize=8)
    axes.set_xlabel("first token p50 (ms)")
    axes.set_ylabel("facts and tool calls right (%)")
    axes.set_xlim(left=0)
    axes.set_ylim(0, 105)
    axes.set_title("Embedded chat models: quality against speed (marker area: RSS)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one model, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.threads, args.temperature)))
        return
    load = Path("/proc/loadavg").read_text().split()[:3]
    rows = []
    for name in args.models:
        print(f"{name}: {len(QUESTIONS)} questions and {len(TOOL_REQUESTS)} tool requests", flush=True)
        command = [sys.executable, "-m", "bench.llm.quality", "--one", name,
                   "--threads", str(args.threads), "--temperature", str(args.temperature)]  # fmt: skip
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(done.stdout))
    print_table(rows, " ".join(load))
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(rows, RESULTS / "llm_quality.png")
    (RESULTS / "llm_quality.json").write_text(json.dumps({"load": load, "models": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS / 'llm_quality.png'} and {RESULTS / 'llm_quality.json'}")


if __name__ == "__main__":
    main()
