"""Voice-to-voice latency of the whole agent, against the running compose stack.

For each dev recording, the edge client gets the recording as its microphone
(real-time pace) and records its speaker. Latency is read off the two files: from
the true end of speech in the input to the first reply sample in the output.
The same is measured for a sequential pipeline built the way the original design
works (wait 810 ms of silence, then the whole transcription, the whole reply, the
whole synthesis) on the same services and models.

    docker compose up -d --wait && python -m bench.e2e.run [--silence-ms 600] [--pause-ms 0 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

from edge_client.config import DEFAULT_PAUSE_MS
from tests.edge import loud_windows_ms, read_session, silence, write_wav
from tests.speech import REPO, Recording, english
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2, stt_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

RESULTS = REPO / "bench" / "results"
LEAD_S, TAIL_S = 0.5, 6.0
SEQUENTIAL_WAIT_MS = 810
_SPEECH_DBFS = -35.0  # a 10 ms window louder than this is speech (input) or reply (output)


@dataclass
class Run:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=dict)

    def add_stage(self, stage: str, ms: float) -> None:
        self.stages_ms.setdefault(stage, []).append(ms)


def true_end_of_speech_ms(rec: Recording) -> float:
    audio = np.frombuffer(rec.pcm(), "<i2").astype(np.float32) / 32768
    return LEAD_S * 1000 + float(loud_windows_ms(audio, 16000, _SPEECH_DBFS)[-1]) + 10


def ours(recordings: list[Recording], silence_ms: int, pause_ms: int, max_tokens: int) -> Run:
    held = f", reply prepared at a {pause_ms} ms pause" if pause_ms else ""
    run = Run(f"streaming, end of turn after {silence_ms} ms{held}")
    for rec in recordings:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            wav = write_wav(tmp / "in.wav", silence(LEAD_S) + rec.pcm() + silence(TAIL_S))
            out, report = tmp / "out.wav", tmp / "turns.jsonl"
            subprocess.run(
                [sys.executable, "-m", "edge_client", "--input", str(wav), "--output", str(out),
                 "--report", str(report), "--silence-ms", str(silence_ms), "--pause-ms", str(pause_ms),
                 "--max-tokens", str(max_tokens)],
                cwd=REPO, check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            session = read_session(out, report)
        end = true_end_of_speech_ms(rec)
        loud = loud_windows_ms(session.output, session.output_rate_hz, _SPEECH_DBFS)
        loud = loud[loud > end]
        if not session.turns or not loud.size:
            print(f"{rec.id}: no reply", file=sys.stderr)
            continue
        t = session.turns[0]["t_ms"]
        assert isinstance(t, dict)
        run.latencies_ms.append(float(loud[0]) - end)
        run.add_stage("endpoint (VAD silence)", t["speech_end"] + silence_ms - end)
        run.add_stage("final transcript", t["transcript_final"] - t["speech_end"] - silence_ms)
        run.add_stage("first token", t["first_token"] - t["transcript_final"])
        run.add_stage("first audio", t["first_audio"] - t["first_token"])
    return run


async def sequential(recordings: list[Recording], max_tokens: int) -> Run:
    """Wait 810 ms, transcribe the whole utterance, generate the whole reply, synthesize all of it."""
    run = Run(f"sequential (wait {SEQUENTIAL_WAIT_MS} ms, whole STT, LLM, TTS)")
    async with (
        grpc.aio.insecure_channel("127.0.0.1:50051") as stt_channel,
        grpc.aio.insecure_channel("127.0.0.1:50052") as llm_channel,
        grpc.aio.insecure_channel("127.0.0.1:50053") as tts_channel,
    ):
        stt = stt_pb2_grpc.SttServiceStub(stt_channel)
        llm = llm_pb2_grpc.LlmServiceStub(llm_channel)
        tts = tts_pb2_grpc.TtsServiceStub(tts_channel)
        for rec in recordings:
            started = time.perf_counter()
            heard = await stt.Recognize(
                stt_pb2.RecognizeRequest(
                    config=stt_pb2.RecognitionConfig(sample_rate_hz=16000), audio_content=rec.pcm()
                )
            )
            transcribed = time.perf_counter()
            text = " ".join(r.transcript for r in heard.results) or "Hello."
            reply = await llm.Chat(
                llm_pb2.ChatRequest(
                    config=llm_pb2.ChatConfig(max_tokens=max_tokens),
                    messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, content=text)],
                )
            )
            replied = time.perf_counter()
            await tts.Synthesize(tts_pb2.SynthesizeRequest(text=reply.text or "Okay."))
            done = time.perf_counter()
            run.add_stage("endpoint (VAD silence)", SEQUENTIAL_WAIT_MS)
            run.add_stage("final transcript", (transcribed - started) * 1000)
            run.add_stage("first token", (replied - transcribed) * 1000)
            run.add_stage("first audio", (done - replied) * 1000)
            run.latencies_ms.append(SEQUENTIAL_WAIT_MS + (done - started) * 1000)
    return run


def report(runs: list[Run]) -> None:
    table = Table(title="Voice-to-voice latency: true end of speech -> first reply sample (ms)")
    table.add_column("pipeline")
    for column in ("n", "p50", "p95"):
        table.add_column(column, justify="right")
    stages = list(runs[0].stages_ms)
    for stage in stages:
        table.add_column(f"{stage} p50", justify="right")
    for run in runs:
        lat = run.latencies_ms
        table.add_row(
            run.name,
            str(len(lat)),
            f"{np.percentile(lat, 50):.0f}",
            f"{np.percentile(lat, 95):.0f}",
            *(f"{np.percentile(run.stages_ms[s], 50):.0f}" for s in stages),
        )
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 1.2 * len(runs) + 2.5))
    names = [r.name for r in runs]
    left.boxplot([r.latencies_ms for r in runs], orientation="horizontal", tick_labels=names)
    left.axvline(800, color="red", linestyle="--", label="target 800 ms")
    left.set_xlabel("voice-to-voice latency (ms)")
    left.legend()
    lefts = np.zeros(len(runs))
    for stage in stages:
        widths = np.array([np.percentile(r.stages_ms[stage], 50) for r in runs])
        right.barh(names, widths, left=lefts, label=stage)
        lefts += widths
    right.set_xlabel("median time per stage (ms)")
    right.set_yticks([])
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "e2e_latency.png", dpi=120)
    print(f"wrote {RESULTS / 'e2e.json'} and {RESULTS / 'e2e_latency.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--silence-ms", nargs="+", type=int, default=[600])
    parser.add_argument("--pause-ms", nargs="+", type=int, default=[DEFAULT_PAUSE_MS, 200])
    parser.add_argument("--max-tokens", type=int, default=40)
    args = parser.parse_args()
    recordings = english()
    runs = [
        ours(recordings, silence_ms, pause_ms, args.max_tokens)
        for silence_ms in args.silence_ms
        for pause_ms in args.pause_ms
    ]
    runs.append(asyncio.run(sequential(recordings, args.max_tokens)))
    report(runs)


if __name__ == "__main__":
    main()
