"""Voice-to-voice latency and turn-taking of the whole agent, against the running compose stack.

Each clip is the edge client's microphone (real-time pace); its speaker is recorded through
the jitter buffer a sound card plays from (``bench.e2e.speaker``). Latency is read off the two
files: from the true end of speech in the input to the first reply sample in the output that
belongs to a reply started after it. A clip with no such reply is a failure: counted, not
dropped. A clip is cut off when the agent answered before the user was done: it split the
utterance into two or more turns, or a reply was audible before the true end of speech. The
user WER is that of what the agent transcribed of each clip (all its turns joined) against
the reference: a row that decodes a turn in fragments (held replies, cut-offs) pays for it
there. No room plays the reply back into the input, so the edge client runs no echo canceller.

Rows: ``bounded`` (the words decoded at each pause and the end-of-turn model judge it: done
ends the turn at once, unsure waits 600 ms, plainly unfinished 1600 ms; the reply is prepared
at the pause and held), ``smart`` (the end-of-turn model), ``silence`` (the default: --silence-ms 600, and the
reply prepared from a 200 ms pause on, played once the silence reaches 600 ms), ``unheld``
(silence with --pause-ms 0: the reply is started only at 600 ms),
``smart-file`` (smart, recorded without the jitter buffer, to show what it adds),
``original`` (the original design's client settings, webrtcvad 3 and 810 ms of silence,
streaming; start the stack as ``STT_MODEL=base STT_BEAM_SIZE=1 docker compose up -d --wait``
for its speech model, with the embedded LLM and Piper standing in for Cerebras and Coqui) and
``sequential`` (the original design: wait 810 ms, then the whole transcription, the whole
reply, the whole synthesis, on the same services), ``realtime`` and ``browser`` (the gateway's
front doors on the same core: ``bench.e2e.front_doors``; the gateway's default settings, which
are the edge client's defaults, the silence row's). Sets: ``dev`` (read sentences as
recorded), ``paused`` (the same with 400-900 ms pauses mid-sentence), ``short`` (card names:
short complete turns).

    docker compose up -d --wait && python -m bench.e2e.run [--rows smart silence] [--clips 2]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bench.e2e import front_doors
from bench.e2e.outcome import Outcome, Run
from bench.e2e.paused import Clip, cards, paused, sentences, whole
from bench.e2e.report import report
from foundation.audio import FRAME_MS
from harness.edge import Session, loud_windows_ms, read_session, silence, write_wav
from harness.speech import REPO
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2, stt_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

LEAD_S, TAIL_S = 0.5, 3.0
SEQUENTIAL_WAIT_MS = 810
SPEECH_DBFS = -35.0  # a 10 ms window louder than this is speech (input) or reply (output)
ROWS = (
    "bounded",
    "smart",
    "silence",
    "unheld",
    "smart-file",
    "original",
    "sequential",
    "realtime",
    "browser",
)
_DETECTOR = {
    "bounded": ["--turn-detector", "bounded"],
    "unheld": ["--turn-detector", "silence", "--silence-ms", "600", "--pause-ms", "0"],
    "smart": ["--turn-detector", "smart"],
    "smart-file": ["--turn-detector", "smart"],
    "original": [
        "--turn-detector",
        "silence",
        "--silence-ms",
        "810",
        "--vad-aggressiveness",
        "3",
        "--pause-ms",
        "0",
    ],
}
SETS = ("paused", "short", "dev")


def clips(name: str, limit: int | None) -> list[Clip]:
    if name == "dev":
        return [whole(r) for r in sentences(limit)]
    if name == "paused":
        return [paused(r) for r in sentences(limit)]
    return [whole(r) for r in cards(limit)]


def true_end_ms(pcm: bytes) -> float:
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    return LEAD_S * 1000 + float(loud_windows_ms(audio, 16000, SPEECH_DBFS)[-1]) + 10


def edge_args(row: str, silence_ms: int, max_tokens: int) -> list[str]:
    module = "edge_client" if row == "smart-file" else "bench.e2e.speaker"
    detector = _DETECTOR.get(row, ["--turn-detector", "silence", "--silence-ms", str(silence_ms)])
    return [sys.executable, "-m", module, *detector, "--max-tokens", str(max_tokens)]


def streaming(clip: Clip, command: list[str], env: dict[str, str] | None = None) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        wav = write_wav(tmp / "in.wav", silence(LEAD_S) + clip.pcm + silence(TAIL_S))
        out, turns = tmp / "out.wav", tmp / "turns.jsonl"
        args = ["--input", str(wav), "--output", str(out), "--report", str(turns)]
        try:
            done = subprocess.run(
                [*command, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
            )
        except subprocess.TimeoutExpired:
            return Outcome(clip.id, clip.text, error="voice-agent timed out")
        if done.returncode != 0:
            return Outcome(
                clip.id, clip.text, error=f"voice-agent exited {done.returncode}: {done.stderr[-300:]}"
            )
        return judge(clip, read_session(out, turns))


def judge(clip: Clip, session: Session) -> Outcome:
    """Latency, stages and cut-off of one run of the edge client on ``clip``."""
    end = true_end_ms(clip.pcm)
    heard = " ".join(str(turn["user_text"]) for turn in session.turns)
    outcome = Outcome(clip.id, clip.text, heard, turns=len(session.turns))
    times = [t["t_ms"] for t in session.turns]
    assert all(isinstance(t, dict) for t in times)
    loud = loud_windows_ms(session.output, session.output_rate_hz, SPEECH_DBFS)
    early = any(isinstance(t, dict) and t.get("first_audio", end) < end for t in times)
    outcome.cut_off = len(session.turns) > 1 or early or bool(np.any(loud < end))
    # The reply to the last of what was said: one that began before the end answered a part.
    last = session.turns[-1] if session.turns else {}
    t = last.get("t_ms", {})
    assert isinstance(t, dict)
    if "first_audio" not in t or t["first_audio"] < end - FRAME_MS:
        errors = [str(line["error"]) for line in session.turns if "error" in line]
        outcome.error = "; ".join(errors) or "no reply after the end of speech"
        return outcome
    reply = loud[loud >= max(end, t["first_audio"] - FRAME_MS)]
    if "error" in last or not reply.size:
        outcome.error = str(last.get("error", "the reply was silent"))
        return outcome
    outcome.latency_ms = float(reply[0]) - end
    marks = [
        ("VAD end", "speech_end"),
        ("endpoint", "end_of_turn"),
        ("final transcript", "transcript_final"),
        ("first token", "first_token"),
        ("first audio", "first_audio"),
    ]
    before = end
    for stage, mark in marks:
        if mark in t:
            outcome.stages_ms[stage] = t[mark] - before
            before = t[mark]
    outcome.stages_ms["playback"] = end + outcome.latency_ms - before
    return outcome


async def sequential(run: Run, recordings: list[Clip], max_tokens: int) -> None:
    """Wait 810 ms, transcribe the whole utterance, generate the whole reply, synthesize all of it."""
    async with (
        grpc.aio.insecure_channel("127.0.0.1:50051") as stt_channel,
        grpc.aio.insecure_channel("127.0.0.1:50052") as llm_channel,
        grpc.aio.insecure_channel("127.0.0.1:50053") as tts_channel,
    ):
        stt = stt_pb2_grpc.SttServiceStub(stt_channel)
        llm = llm_pb2_grpc.LlmServiceStub(llm_channel)
        tts = tts_pb2_grpc.TtsServiceStub(tts_channel)
        for clip in recordings:
            started = time.perf_counter()
            heard = await stt.Recognize(
                stt_pb2.RecognizeRequest(
                    config=stt_pb2.RecognitionConfig(sample_rate_hz=16000), audio_content=clip.pcm
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
            stages = {
                "endpoint": SEQUENTIAL_WAIT_MS,
                "final transcript": (transcribed - started) * 1000,
                "first token": (replied - transcribed) * 1000,
                "first audio": (done - replied) * 1000,
            }
            run.outcomes.append(Outcome(clip.id, clip.text, text, sum(stages.values()), stages, turns=1))


def measure(runs: list[Run], name: str, chosen: list[Clip], args: argparse.Namespace) -> None:
    """Each clip through each row in turn, so that a slower spell of the machine hits all rows alike."""
    streamed = [
        row for row in args.rows if row != "sequential" and not (row == "smart-file" and name == "paused")
    ]
    by_row = {row: Run(row, name) for row in streamed}
    runs += by_row.values()
    for clip in chosen:
        for row, run in by_row.items():
            if row == "realtime":
                outcome = front_doors.realtime(clip, true_end_ms(clip.pcm), LEAD_S, TAIL_S, SPEECH_DBFS)
            elif row == "browser":
                outcome = front_doors.browser(clip, LEAD_S, TAIL_S)
            else:
                outcome = streaming(clip, edge_args(row, args.silence_ms, args.max_tokens))
            run.outcomes.append(outcome)
            latency = "-" if outcome.latency_ms is None else f"{outcome.latency_ms:.0f} ms"
            print(f"{name} {row} {clip.id}: {outcome.error or latency}", file=sys.stderr, flush=True)
    # The sequential design has no turn-taking (it waits 810 ms, whatever was said): no paused set.
    if "sequential" in args.rows and name != "paused":
        runs.append(run := Run("sequential", name))
        asyncio.run(sequential(run, chosen, args.max_tokens))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=["smart", "silence", "sequential"])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--clips", type=int, help="at most this many clips per set")
    parser.add_argument("--silence-ms", type=int, default=600, help="the silence row's end-of-turn silence")
    parser.add_argument("--max-tokens", type=int, default=40)
    args = parser.parse_args()
    sets = {name: clips(name, args.clips) for name in args.sets}
    runs: list[Run] = []
    try:
        for name, chosen in sets.items():
            measure(runs, name, chosen, args)
    except KeyboardInterrupt:
        print("stopped: reporting what was measured", file=sys.stderr)
    report(runs, args.silence_ms)


if __name__ == "__main__":
    main()
