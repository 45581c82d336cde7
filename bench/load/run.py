"""Simultaneous conversations against the running compose stack: latency, refusals, CPU, memory.

N edge clients (file mode, real speech, real-time pace, starts staggered) talk to the stack at
once, for N = 1, 2, 4 (and what ``--counts`` adds); each says ``--turns`` utterances with a pause
for the reply after each. Per N: voice-to-voice p50/p95 (end of speech -> first reply audio),
STT final, LLM first token, TTS first audio, refused or unanswered turns, and each service's
CPU and memory from ``docker stats``.

    make certs && docker compose -f docker-compose.yml -f docker-compose.secure.yml up -d --wait
    python -m bench.load.run --secure [--counts 1 2 4 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from harness.edge import silence, write_wav
from harness.speech import REPO, english

RESULTS = REPO / "bench" / "results"
CERTS = REPO / "certs"
# After each utterance the client stays silent this long: the reply plays in it.
REPLY_GAP_S = 10.0
_REFUSED = ("RESOURCE_EXHAUSTED", "UNAUTHENTICATED")


@dataclass
class Load:
    conversations: int
    turns: int = 0
    answered: int = 0
    refusals: int = 0
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    cpu_percent: dict[str, list[float]] = field(default_factory=dict)
    memory_mib: dict[str, list[float]] = field(default_factory=dict)

    def add(self, stage: str, ms: float) -> None:
        self.stages_ms.setdefault(stage, []).append(ms)


def _mib(text: str) -> float:
    number = float(text.rstrip("KMGiB"))
    unit = text.lstrip("0123456789.")
    return number * {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 2**20}.get(unit, 1.0)


class Stats(threading.Thread):
    """Samples ``docker stats`` for the compose project's containers until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.cpu: dict[str, list[float]] = {}
        self.memory: dict[str, list[float]] = {}

    def run(self) -> None:
        while not self.halt.is_set():
            done = subprocess.run(
                ["docker", "stats", "--no-stream", "--format", "{{json .}}"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            for line in done.stdout.splitlines():
                row = json.loads(line)
                if not row["Name"].startswith("voice-agent-"):
                    continue
                name = row["Name"].removeprefix("voice-agent-").rsplit("-", 1)[0]
                self.cpu.setdefault(name, []).append(float(row["CPUPerc"].rstrip("%")))
                self.memory.setdefault(name, []).append(_mib(row["MemUsage"].split("/")[0].strip()))


def _input(folder: Path, index: int, turns: int) -> Path:
    clips = [r for r in english() if 2.5 < r.duration_s < 7.5]
    pcm = silence(0.5)
    for turn in range(turns):
        pcm += clips[(index + turn) % len(clips)].pcm() + silence(REPLY_GAP_S)
    return write_wav(folder / f"in-{index}.wav", pcm)


def _security_args(secure: bool, index: int) -> list[str]:
    """TLS, and a token per conversation (each person has their own, so each has its limits)."""
    if not secure:
        return []
    entries = [line.partition(":") for line in (CERTS / "tokens").read_text().split() if ":" in line]
    tokens = [token for name, _, token in entries if name != "gateway"]  # the gateway's own is not a person's
    return ["--tls", "--ca", str(CERTS / "ca.crt"), "--token", tokens[index % len(tokens)]]


def run_load(count: int, turns: int, stagger_s: float, secure: bool, max_tokens: int) -> Load:
    load = Load(count)
    stats = Stats()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        procs = []
        stats.start()
        print(f"{count} conversations at once, {turns} turns each ...", file=sys.stderr, flush=True)
        for i in range(count):
            command = [
                sys.executable, "-m", "edge_client", "--input", str(_input(folder, i, turns)),
                "--output", str(folder / f"out-{i}.wav"), "--report", str(folder / f"turns-{i}.jsonl"),
                "--max-tokens", str(max_tokens), *_security_args(secure, i),
            ]  # fmt: skip
            procs.append(subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True))
            time.sleep(stagger_s)
        errors = [proc.communicate(timeout=600)[1] for proc in procs]
        stats.halt.set()
        stats.join()
        for i, stderr in enumerate(errors):
            load.refusals += sum(stderr.count(code) for code in _REFUSED)
            report = folder / f"turns-{i}.jsonl"
            lines = report.read_text().splitlines() if report.exists() else []
            load.turns += turns
            for line in lines:
                t = json.loads(line)["t_ms"]
                if "first_audio" not in t or "speech_end" not in t:
                    continue
                load.answered += 1
                load.add("voice-to-voice", t["first_audio"] - t["speech_end"])
                load.add("stt final", t["transcript_final"] - t["speech_end"])
                load.add("llm first token", t["first_token"] - t["transcript_final"])
                load.add("tts first audio", t["first_audio"] - t["first_token"])
    load.cpu_percent, load.memory_mib = stats.cpu, stats.memory
    print(
        f"{count} at once: {load.answered}/{load.turns} turns answered, {load.refusals} refused",
        file=sys.stderr,
    )
    return load


def _p(values: list[float], q: int) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


def report(loads: list[Load], secure: bool) -> None:
    mode = "TLS + tokens" if secure else "plaintext"
    table = Table(title=f"Simultaneous conversations ({mode}); ms unless noted")
    columns = ["N", "turns answered", "refusal notes", "v2v p50", "v2v p95", "STT final p50",
               "LLM 1st token p50", "TTS 1st audio p50"]  # fmt: skip
    services = sorted({s for load in loads for s in load.cpu_percent})
    columns += [f"{s} CPU% mean/max" for s in services] + [f"{s} MiB max" for s in services]
    for column in columns:
        table.add_column(column, justify="right")
    for load in loads:
        s = load.stages_ms
        table.add_row(
            str(load.conversations), f"{load.answered}/{load.turns}", str(load.refusals),
            _p(s.get("voice-to-voice", []), 50), _p(s.get("voice-to-voice", []), 95),
            _p(s.get("stt final", []), 50), _p(s.get("llm first token", []), 50),
            _p(s.get("tts first audio", []), 50),
            *(f"{np.mean(load.cpu_percent.get(v, [0])):.0f}/{max(load.cpu_percent.get(v, [0])):.0f}"
              for v in services),
            *(f"{max(load.memory_mib.get(v, [0])):.0f}" for v in services),
        )  # fmt: skip
    Console(width=200).print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps([asdict(load) for load in loads], indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    counts = [load.conversations for load in loads]
    for stage, color in zip(
        ("voice-to-voice", "stt final", "llm first token", "tts first audio"), "bgmr", strict=True
    ):
        for q, style in ((50, "-o"), (95, "--")):
            values = [np.percentile(load.stages_ms.get(stage, [np.nan]), q) for load in loads]
            left.plot(counts, values, style, color=color, label=f"{stage} p{q}")
    left.set_xlabel("simultaneous conversations")
    left.set_ylabel("ms")
    left.set_xticks(counts)
    left.legend(fontsize=8)
    for service in services:
        right.plot(
            counts, [np.mean(load.cpu_percent.get(service, [0])) for load in loads], "-o", label=service
        )
    right.axhline(200, color="red", linestyle="--", label="2 cores")
    right.set_xlabel("simultaneous conversations")
    right.set_ylabel("mean CPU % (docker stats)")
    right.set_xticks(counts)
    right.legend(fontsize=8)
    fig.suptitle(f"Load on the composed stack ({mode})")
    fig.tight_layout()
    fig.savefig(RESULTS / "load.png", dpi=120)
    print(f"wrote {RESULTS / 'load.json'} and {RESULTS / 'load.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--stagger-s", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--secure", action="store_true", help="TLS and the token from ./certs (make certs)")
    args = parser.parse_args()
    # One conversation first, not counted: the models' first turn is slower (caches, allocations).
    run_load(1, 1, 0, args.secure, args.max_tokens)
    loads = [run_load(n, args.turns, args.stagger_s, args.secure, args.max_tokens) for n in args.counts]
    report(loads, args.secure)


if __name__ == "__main__":
    main()
