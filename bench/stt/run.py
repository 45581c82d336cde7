"""STT benchmark: accuracy, end-of-utterance -> final latency, real-time factor, memory.

Runs the service as its own process (``python -m services.stt``) for each model,
streams the dev recordings at real-time pace the way the edge client does
(speech, then the client's endpoint silence, then ``end_of_utterance``), and
compares with one offline faster-whisper pass over the same audio. One more row
per model lets the service's turn detector end the turn: the client sends
``end_of_utterance`` on END_OF_TURN, or after 600 ms of silence (its own
endpointer) when the detector says the turn goes on.

RTF is CPU seconds per second of audio for every row (the service process's, or
this process's for the offline pass).

With ``--streams``, the load mode instead: for each N, N streams at once against one
service (starts 50 ms apart, real-time paced; each a clip, then ``end_of_utterance``, then
half-close). Per N: finals, statuses by code, streams that got neither (must be 0), and
end of utterance -> final p50/p95. The service's stream limit is raised to the largest N
unless ``--max-streams`` says otherwise.

    python -m bench.stt.run [--models tiny.en base] [--eou-silence-ms 0 500]
        [--speculate-silence-ms 64 160] [--no-turn]
    python -m bench.stt.run --streams 1 8 16 32 64 [--max-streams 16] [--pace 1]
    python -m bench.stt.run --shouts [--models tiny.en]

With ``--shouts``, short words said loudly or acted (tests/data/shouts) and real noises
(tests/data/sounds), each streamed as the edge client does (then 600 ms of silence and
``end_of_utterance``): per kind, how many were heard right (an interruption's words, each said at
least once; a backchannel's words in the backchannel list; no words for a noise) and the
end of utterance -> final latency, which for a noise is what its pause of the reply costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
from faster_whisper import WhisperModel
from rich.console import Console
from rich.table import Table

from conversation.backchannel import DEFAULT_BACKCHANNELS, Backchannels
from foundation.audio import pcm16_to_float
from harness.speech import REPO, Recording, corpus_wer, english, normalize, shouts
from harness.stt_load import many_streams
from services.stt.models import resolve_model
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

CHUNK_S = 0.1
RESULTS = REPO / "bench" / "results"
# The edge client's own endpointer: silence that ends a turn without a turn detector.
CLIENT_SILENCE_MS = 600
SOUNDS = REPO / "tests" / "data" / "sounds"
NOISES = (
    "cough-default",
    "cough-hillbilly",
    "cough-default-es",
    "cough-default-ru",
    "trash-empty",
    "camera-shutter",
)


@dataclass
class Row:
    name: str
    wer: float
    # end_of_utterance -> final
    latency_p50_ms: float
    latency_p95_ms: float
    rtf: float
    peak_rss_mb: float
    latencies_ms: list[float]
    # end of the clip's audio (its own trailing silence included) -> final: what the user waits
    after_audio_p50_ms: float = float("nan")
    # turn-detector rows: share of clips the detector ended (the rest waited for the fallback)
    ended_by_detector: float = float("nan")


@dataclass
class LoadRow:
    streams: int
    finals: int
    statuses: dict[str, int]
    # streams that ended OK with no final: must be 0
    neither: int
    # end_of_utterance -> final, over the streams with a final
    latency_p50_ms: float
    latency_p95_ms: float
    wer: float
    wall_s: float
    latencies_ms: list[float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds used and peak resident MiB of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM")
    )
    return cpu_s, int(hwm.split()[1]) / 1024


@dataclass
class _Outcome:
    text: str
    latency_ms: float  # end_of_utterance -> final
    after_audio_ms: float  # end of the clip's audio -> final
    ended_by_detector: bool


async def _stream_one(
    stub: stt_pb2_grpc.SttServiceStub, rec: Recording, eou_silence_ms: int, turn: bool
) -> _Outcome:
    """One clip at real-time pace. With ``turn``, as a client that ends the turn on END_OF_TURN
    (even one heard inside the clip, which cuts it) or after its own silence fallback."""
    pcm = rec.pcm()
    chunk = int(16000 * CHUNK_S) * 2
    sent_eou = audio_end = 0.0
    end_of_turn = asyncio.Event()
    eou = stt_pb2.StreamingRecognizeRequest(end_of_utterance=stt_pb2.EndOfUtterance())

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        nonlocal sent_eou, audio_end
        config = stt_pb2.RecognitionConfig(sample_rate_hz=16000, enable_turn_detection=turn)
        yield stt_pb2.StreamingRecognizeRequest(config=config)
        start = time.perf_counter()
        tail_ms = CLIENT_SILENCE_MS if turn else eou_silence_ms
        audio = pcm + b"\0" * (16000 * 2 * tail_ms // 1000)
        for i, offset in enumerate(range(0, len(audio), chunk)):
            if offset >= len(pcm):
                audio_end = audio_end or time.perf_counter()
                if end_of_turn.is_set():
                    break
            elif end_of_turn.is_set():
                end_of_turn.clear()
                yield eou
            yield stt_pb2.StreamingRecognizeRequest(audio_content=audio[offset : offset + chunk])
            await asyncio.sleep(max(0.0, start + (i + 1) * CHUNK_S - time.perf_counter()))
        sent_eou = time.perf_counter()
        audio_end = audio_end or sent_eou
        yield eou

    finals, final_at = [], float("nan")
    async for response in stub.StreamingRecognize(requests()):
        if response.speech_event.type == stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN:
            end_of_turn.set()
        for result in response.results:
            if result.is_final:
                finals.append(result.transcript)
                final_at = time.perf_counter()
    return _Outcome(
        " ".join(finals),
        (final_at - sent_eou) * 1000,
        (final_at - audio_end) * 1000,
        sent_eou - audio_end < CLIENT_SILENCE_MS / 1000 - 0.05,
    )


def _start_service(model: str, port: int, **settings: str) -> subprocess.Popen[bytes]:
    """``python -m services.stt`` on ``port``, with ``STT_<NAME>`` settings from ``settings``."""
    env = {
        **os.environ,
        "STT_MODEL": model,
        "STT_PORT": str(port),
        "STT_METRICS_PORT": "0",
        "STT_LOG_LEVEL": "warning",
        **{f"STT_{name.upper()}": value for name, value in settings.items()},
    }
    return subprocess.Popen([sys.executable, "-m", "services.stt"], env=env, cwd=REPO)


async def _wait_ready(stub: stt_pb2_grpc.SttServiceStub) -> None:
    for _ in range(600):
        try:
            await stub.GetInfo(stt_pb2.GetInfoRequest(), timeout=1)
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.2)


async def bench_service(
    model: str,
    eou_silence_ms: int,
    recordings: list[Recording],
    speculate_ms: int | None = None,
    turn: bool = False,
) -> Row:
    port = _free_port()
    settings = {} if speculate_ms is None else {"speculate_silence_ms": str(speculate_ms)}
    proc = _start_service(model, port, **settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stt_pb2_grpc.SttServiceStub(channel)
            await _wait_ready(stub)
            cpu_before, _ = _proc_stats(proc.pid)
            outcomes = [await _stream_one(stub, rec, eou_silence_ms, turn) for rec in recordings]
            cpu_after, peak_mb = _proc_stats(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    audio_s = sum(r.duration_s for r in recordings)
    latencies = [o.latency_ms for o in outcomes]
    name = f"stream {model}, " + (
        f"EOU on END_OF_TURN, else after {CLIENT_SILENCE_MS} ms" if turn else f"EOU after {eou_silence_ms} ms"
    )
    if speculate_ms is not None:
        name += f", decode from {speculate_ms} ms of silence"
    return Row(
        name,
        corpus_wer([(rec.text, o.text) for rec, o in zip(recordings, outcomes, strict=True)]),
        float(np.percentile(latencies, 50)),
        float(np.percentile(latencies, 95)),
        (cpu_after - cpu_before) / audio_s,
        peak_mb,
        latencies,
        float(np.percentile([o.after_audio_ms for o in outcomes], 50)),
        float(np.mean([o.ended_by_detector for o in outcomes])) if turn else float("nan"),
    )


async def bench_load(
    model: str, counts: list[int], max_streams: int, pace: float, recordings: list[Recording]
) -> list[LoadRow]:
    """For each N in ``counts``, N streams at once against one service process."""
    port = _free_port()
    proc = _start_service(model, port, max_streams=str(max_streams))
    rows = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stt_pb2_grpc.SttServiceStub(channel)
            await _wait_ready(stub)
            for n in counts:
                started = time.perf_counter()
                ends = await many_streams(stub, recordings, n, pace=pace)
                wall_s = time.perf_counter() - started
                statuses: dict[str, int] = {}
                for end in ends:
                    if end.code is not None:
                        statuses[end.code.name] = statuses.get(end.code.name, 0) + 1
                latencies = [e.latency_ms for e in ends if e.finals]
                answered = [e for e in ends if e.finals]
                rows.append(
                    LoadRow(
                        n,
                        len(answered),
                        statuses,
                        sum(not e.answered for e in ends),
                        float(np.percentile(latencies, 50)) if latencies else float("nan"),
                        float(np.percentile(latencies, 95)) if latencies else float("nan"),
                        corpus_wer([(e.recording.text, " ".join(e.finals)) for e in answered])
                        if answered
                        else float("nan"),
                        wall_s,
                        latencies,
                    )
                )
                print(rows[-1].streams, "streams:", rows[-1].finals, "finals", statuses or "", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


def report_load(model: str, rows: list[LoadRow], max_streams: int, pace: float) -> None:
    table = Table(
        title=f"STT under load: {model}, N streams at once, {pace:g}x real time, max_streams {max_streams}"
    )
    columns = ("N", "finals", "statuses", "neither", "EOU -> final p50 ms", "p95 ms", "WER", "wall s")
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r.streams),
            str(r.finals),
            ", ".join(f"{code} {count}" for code, count in sorted(r.statuses.items())) or "-",
            str(r.neither),
            f"{r.latency_p50_ms:.0f}",
            f"{r.latency_p95_ms:.0f}",
            f"{r.wer:.3f}",
            f"{r.wall_s:.0f}",
        )
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stt_load.json").write_text(
        json.dumps(
            {"model": model, "max_streams": max_streams, "pace": pace, "rows": [asdict(r) for r in rows]},
            indent=2,
        )
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.boxplot([r.latencies_ms or [float("nan")] for r in rows], tick_labels=[str(r.streams) for r in rows])
    ax.set_xlabel("streams at once")
    ax.set_ylabel("end of utterance -> final (ms)")
    fig.tight_layout()
    fig.savefig(RESULTS / "stt_load.png", dpi=120)
    print(f"wrote {RESULTS / 'stt_load.json'} and {RESULTS / 'stt_load.png'}")


async def bench_shouts(model: str) -> None:
    """Short and shouted words and real noises through the service, as the edge client sends them."""
    noises = [Recording(n, SOUNDS / f"{n}.wav", "", 0.0, "en") for n in NOISES]
    sets = {"interruption": shouts("interruption"), "backchannel": shouts("backchannel"), "noise": noises}
    known = Backchannels(DEFAULT_BACKCHANNELS)

    def right(kind: str, rec: Recording, text: str) -> bool:
        if kind == "noise":
            return not text.strip()
        if kind == "backchannel":
            return text in known
        said = normalize(text).split()
        return bool(said) and set(said) == set(normalize(rec.text).split())

    port = _free_port()
    proc = _start_service(model, port)
    table = Table(
        title=f"STT: short and shouted words, real noises ({model}, EOU after {CLIENT_SILENCE_MS} ms)"
    )
    for column in ("kind", "heard right", "EOU -> final p50 ms", "p95 ms", "wrong"):
        table.add_column(column, justify="left" if column in ("kind", "wrong") else "right")
    rows = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stt_pb2_grpc.SttServiceStub(channel)
            await _wait_ready(stub)
            for kind, recs in sets.items():
                outcomes = [await _stream_one(stub, rec, CLIENT_SILENCE_MS, False) for rec in recs]
                ok = [right(kind, rec, o.text) for rec, o in zip(recs, outcomes, strict=True)]
                latencies = [o.latency_ms for o in outcomes]
                wrong = [
                    f"{rec.id}: {o.text!r}" for rec, o, k in zip(recs, outcomes, ok, strict=True) if not k
                ]
                said = {rec.id: o.text for rec, o in zip(recs, outcomes, strict=True)}
                rows.append(
                    {
                        "kind": kind,
                        "right": sum(ok),
                        "clips": len(recs),
                        "latencies_ms": latencies,
                        "said": said,
                    }
                )
                table.add_row(
                    kind, f"{sum(ok)}/{len(recs)}", f"{np.percentile(latencies, 50):.0f}",
                    f"{np.percentile(latencies, 95):.0f}", "; ".join(wrong),
                )  # fmt: skip
                print(kind, "done", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    Console(width=200).print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stt_shouts.json").write_text(json.dumps(rows, indent=2))
    print(f"wrote {RESULTS / 'stt_shouts.json'}")


def bench_offline(model: str, recordings: list[Recording]) -> Row:
    """One faster-whisper pass over each whole clip, started when the audio ends."""
    import resource

    whisper = WhisperModel(
        resolve_model(model, "~/.cache/voice-agent/models"), device="cpu", compute_type="int8"
    )
    pairs, latencies = [], []
    cpu_before = time.process_time()
    for rec in recordings:
        started = time.perf_counter()
        segments, _ = whisper.transcribe(
            pcm16_to_float(rec.pcm()),
            language="en",
            beam_size=5,
            temperature=0.0,
            condition_on_previous_text=False,
        )
        text = " ".join(s.text.strip() for s in segments)
        latencies.append((time.perf_counter() - started) * 1000)
        pairs.append((rec.text, text))
    cpu_s = time.process_time() - cpu_before
    audio_s = sum(r.duration_s for r in recordings)
    return Row(
        f"offline {model} (whole clip after it ends)",
        corpus_wer(pairs),
        float(np.percentile(latencies, 50)),
        float(np.percentile(latencies, 95)),
        cpu_s / audio_s,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        latencies,
        float(np.percentile(latencies, 50)),
    )


def bench_turn_cost(recordings: list[Recording]) -> str:
    """Milliseconds for one end-of-turn decision (features, then the model), p50 over the clips."""
    from services.stt.turn import TurnDetector

    detector = TurnDetector()
    detector.load()
    features_ms, total_ms = [], []
    for rec in recordings:
        audio = pcm16_to_float(rec.pcm())
        started = time.perf_counter()
        detector.features(audio)
        features_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        detector.probability(audio)
        total_ms.append((time.perf_counter() - started) * 1000)
    return (
        f"one end-of-turn decision: {np.percentile(total_ms, 50):.0f} ms p50 "
        f"({np.percentile(features_ms, 50):.0f} ms features, the rest the model, 1 thread)"
    )


def report(rows: list[Row]) -> None:
    table = Table(title="STT: dev recordings (English), 2-core CPU, int8")
    columns = (
        "pipeline",
        "WER",
        "EOU -> final p50 ms",
        "p95 ms",
        "end of audio -> final p50 ms",
        "ended by detector",
        "RTF (CPU s / audio s)",
        "peak RSS MiB",
    )
    for column in columns:
        table.add_column(column, justify="right" if column != "pipeline" else "left")
    for r in rows:
        table.add_row(
            r.name,
            f"{r.wer:.3f}",
            f"{r.latency_p50_ms:.0f}",
            f"{r.latency_p95_ms:.0f}",
            f"{r.after_audio_p50_ms:.0f}",
            "" if np.isnan(r.ended_by_detector) else f"{r.ended_by_detector:.0%}",
            f"{r.rtf:.3f}",
            f"{r.peak_rss_mb:.0f}",
        )
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stt.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.5))
    ax.boxplot([r.latencies_ms for r in rows], orientation="horizontal", tick_labels=[r.name for r in rows])
    ax.axvline(150, color="red", linestyle="--", label="target 150 ms")
    ax.set_xlabel("end of utterance -> final transcript (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "stt_latency.png", dpi=120)
    print(f"wrote {RESULTS / 'stt.json'} and {RESULTS / 'stt_latency.png'}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--eou-silence-ms", nargs="+", type=int, default=[0, 500])
    parser.add_argument(
        "--speculate-silence-ms",
        nargs="+",
        type=int,
        default=[None],
        help="STT_SPECULATE_SILENCE_MS values to compare (default: the service's)",
    )
    parser.add_argument("--no-turn", action="store_true", help="leave out the turn-detector row")
    parser.add_argument("--no-offline", action="store_true", help="leave out the offline row")
    parser.add_argument("--streams", nargs="+", type=int, help="load mode: streams at once, a row per count")
    parser.add_argument(
        "--max-streams", type=int, help="load mode: STT_MAX_STREAMS (default: the largest count)"
    )
    parser.add_argument("--pace", type=float, default=1.0, help="load mode: times real time (0: all at once)")
    parser.add_argument("--shouts", action="store_true", help="short and shouted words, and real noises")
    args = parser.parse_args()
    if args.shouts:
        await bench_shouts(args.models[0] if args.models != parser.get_default("models") else "tiny.en")
        return
    recordings = english()
    if args.streams:
        model, max_streams = args.models[0], args.max_streams or max(args.streams)
        load_rows = await bench_load(model, args.streams, max_streams, args.pace, recordings)
        report_load(model, load_rows, max_streams, args.pace)
        return
    rows = []
    for model in args.models:
        for speculate_ms in args.speculate_silence_ms:
            for silence_ms in args.eou_silence_ms:
                rows.append(await bench_service(model, silence_ms, recordings, speculate_ms))
        if not args.no_turn:
            rows.append(await bench_service(model, 0, recordings, turn=True))
        if not args.no_offline:
            rows.append(bench_offline(model, recordings))
    report(rows)
    if not args.no_turn:
        print(bench_turn_cost(recordings))


if __name__ == "__main__":
    asyncio.run(main())
