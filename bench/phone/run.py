"""The phone: voice-to-voice through Asterisk against the edge client, the calls this machine
holds at once, and speech recognition on narrowband, noisy lines with and without noise
suppression.

    python -m bench.phone.run [--calls 1 2 3] [--clips 10] [--skip-calls] [--skip-wer]

(from the repository root, the stack and its phone profile up: ``make certs images-phone``,
``docker compose --profile phone up -d --wait``).

- Voice to voice: each English clip said by a pjsua2 softphone calling Asterisk (which hands the
  call to the gateway's AudioSocket door), from the end of the caller's speech to the first
  reply audio the caller hears; and the same clips through the edge client on files
  (``voice-agent --input``), in the same run.
- Calls at once: K calls placed together (0.2 s apart, each saying a clip), each one's
  voice-to-voice time; K holds when every call is answered and the p95 stays under 2 s.
  A call ends once its reply has been heard out (or ``REPLY_WAIT_S`` after the speech).
- WER: the clips through the STT service (the gateway's ``/v1/audio/transcriptions``) at
  16 kHz; band-limited to 300-3400 Hz and μ-law round-tripped at 8 kHz (a phone line); and with
  noise (white noise and a 120 Hz hum) mixed in at 10 and 0 dB SNR, with and without the
  gateway's noise suppression (WebRTC's, at 8 kHz, as the phone doors apply it).

Prints tables, writes what it measured into bench/results/phone.json (keeping the rest).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import wave
from pathlib import Path

import numpy as np
import openai
from rich.console import Console
from rich.table import Table

from foundation.audio import float_to_pcm16, pcm16_to_float, resample
from foundation.noise import NoiseSuppressor
from harness.edge import loud_windows_ms, voice_agent
from harness.sip_caller import TICK_S, Script, SipPhone
from harness.speech import REPO, Recording, corpus_wer, english
from services.gateway import mulaw

RESULTS = REPO / "bench" / "results" / "phone.json"
LINE_HZ = 8000
HOLDS_UNDER_S = 2.0
LEAD_S = 0.5  # a call's quiet before the caller speaks (Script's default)
# A reply's first audio is awaited this long after the caller's speech (then the call ends).
REPLY_WAIT_S = 8
SNRS_DB = (10, 0)
console = Console()


def _wav_bytes(pcm: bytes, rate_hz: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm)
    return out.getvalue()


def _speech_end_s(pcm: bytes, rate_hz: int) -> float:
    loud = loud_windows_ms(pcm16_to_float(pcm), rate_hz, -40)
    return float(loud[-1] + 10) / 1000 if loud.size else len(pcm) / 2 / rate_hz


# -- speech recognition on a phone line --------------------------------------------------------
def _line(pcm16k: bytes) -> np.ndarray:
    """A phone line: 300-3400 Hz, 8 kHz, through μ-law and back (float32)."""
    audio = resample(pcm16_to_float(pcm16k), 16000, LINE_HZ)
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(audio.size, 1 / LINE_HZ)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    band = np.fft.irfft(spectrum, audio.size).astype(np.float32)
    return pcm16_to_float(mulaw.decode(mulaw.encode(float_to_pcm16(band))))


def _noisy(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(audio.size) / LINE_HZ
    noise = rng.standard_normal(audio.size) + 0.5 * np.sin(2 * np.pi * 120 * t) * np.sqrt(2)
    speech_power = float(np.mean(audio**2))
    noise *= np.sqrt(speech_power / float(np.mean(noise**2)) / 10 ** (snr_db / 10))
    mixed: np.ndarray = (audio + noise).astype(np.float32)
    return mixed


def _suppressed(audio: np.ndarray) -> np.ndarray:
    cleaned: np.ndarray = pcm16_to_float(NoiseSuppressor(LINE_HZ).process(float_to_pcm16(audio)))
    return cleaned


def _transcribe(client: openai.OpenAI, pcm: bytes, rate_hz: int) -> str:
    audio = ("clip.wav", _wav_bytes(pcm, rate_hz), "audio/wav")
    return client.audio.transcriptions.create(model="whisper-1", file=audio).text


def wer_rows(clips: list[Recording]) -> list[dict[str, object]]:
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    conditions: dict[str, list[tuple[str, str]]] = {}

    def add(name: str, clip: Recording, pcm: bytes, rate_hz: int) -> None:
        conditions.setdefault(name, []).append((clip.text, _transcribe(client, pcm, rate_hz)))

    for i, clip in enumerate(clips):
        console.print(f"  WER: clip {i + 1} of {len(clips)}")
        add("16 kHz", clip, clip.pcm(), 16000)
        line = _line(clip.pcm())
        add("8 kHz line (300-3400 Hz, μ-law)", clip, float_to_pcm16(line), LINE_HZ)
        for snr in SNRS_DB:
            noisy = _noisy(line, snr, seed=i)
            add(f"8 kHz line, {snr} dB SNR", clip, float_to_pcm16(noisy), LINE_HZ)
            add(
                f"8 kHz line, {snr} dB SNR, noise suppression",
                clip,
                float_to_pcm16(_suppressed(noisy)),
                LINE_HZ,
            )
    return [
        {"condition": name, "clips": len(pairs), "wer": round(corpus_wer(pairs), 3)}
        for name, pairs in conditions.items()
    ]


# -- voice to voice ----------------------------------------------------------------------------
def _line_wav(clip: Recording, path: Path) -> Path:
    path.write_bytes(
        _wav_bytes(float_to_pcm16(resample(pcm16_to_float(clip.pcm()), 16000, LINE_HZ)), LINE_HZ)
    )
    return path


def _phone_latencies(phone: SipPhone, clips: list[Recording], folder: Path) -> list[float | None]:
    """Each clip's voice-to-voice time through Asterisk (s; None: no reply within
    ``REPLY_WAIT_S``), its calls placed together."""
    scripts = [
        Script(
            first=_line_wav(clip, folder / f"clip-{i}.wav"),
            quiet_s=2.0,
            max_s=LEAD_S + clip.duration_s + REPLY_WAIT_S,
        )
        for i, clip in enumerate(clips)
    ]
    latencies: list[float | None] = []
    for clip, heard in zip(clips, phone.place(scripts, folder), strict=True):
        speech_end = heard.first_at + _speech_end_s(clip.pcm(), 16000)
        voiced = heard.voiced(speech_end, float("inf")) if heard.first_at >= 0 else []
        latencies.append(voiced[0] - speech_end - TICK_S if voiced else None)
    return latencies


def _edge_latency(clip: Recording, folder: Path) -> float | None:
    session = voice_agent(folder, clip.pcm() + bytes(16000 * 2 * REPLY_WAIT_S))
    speech_end_ms = _speech_end_s(clip.pcm(), 16000) * 1000
    loud = session.audible()
    after = loud[loud > speech_end_ms]
    return float(after[0] - speech_end_ms) / 1000 if after.size else None


def _stats(values: list[float | None]) -> dict[str, object]:
    replies = [v for v in values if v is not None]
    stats: dict[str, object] = {"calls": len(values), "replied": len(replies)}
    if replies:
        stats["p50_s"] = round(statistics.median(replies), 3)
        stats["p95_s"] = round(float(np.percentile(replies, 95)), 3)
    return stats


def _holds(stats: dict[str, object]) -> bool:
    """Every call answered, and 95 % of them within ``HOLDS_UNDER_S``."""
    return stats["replied"] == stats["calls"] and float(str(stats.get("p95_s", "inf"))) < HOLDS_UNDER_S


def _shown(seconds: float | None) -> str:
    return "no reply" if seconds is None else f"{seconds:.2f} s"


def calls(clips: list[Recording], levels: list[int]) -> dict[str, object]:
    """Voice to voice by phone and by the edge client, clip by clip; then ``levels`` calls at once."""
    phone = SipPhone("caller", (REPO / "certs" / "sip-password").read_text().strip())
    phone_s: list[float | None] = []
    edge_s: list[float | None] = []
    at_once: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm = _phone_latencies(phone, clips[:1], folder)[0]
        console.print(f"  a first call, not counted (it warms the services): {_shown(warm)}")
        for i, clip in enumerate(clips):
            phone_s += _phone_latencies(phone, [clip], folder)
            edge_dir = folder / f"edge-{i}"
            edge_dir.mkdir()
            edge_s.append(_edge_latency(clip, edge_dir))
            console.print(
                f"  clip {i + 1} of {len(clips)} ({clip.id}):"
                f" phone {_shown(phone_s[-1])}, edge client {_shown(edge_s[-1])}"
            )
        for k in levels:
            if k == 1:
                at_once["1"] = _stats(phone_s)
                continue
            latencies: list[float | None] = []
            for start in range(0, len(clips) - k + 1, k):
                latencies += _phone_latencies(phone, clips[start : start + k], folder)
                console.print(f"  {k} calls at once: {', '.join(_shown(s) for s in latencies[-k:])}")
            at_once[str(k)] = _stats(latencies)
    phone.close()
    held = 0
    for k in sorted(levels):
        if not _holds(at_once[str(k)]):
            break
        held = k
    return {
        "voice_to_voice": {"phone (Asterisk)": _stats(phone_s), "edge client": _stats(edge_s)},
        "calls_at_once": at_once,
        "holds_calls": held,
    }


def _latency_table(results: dict[str, object]) -> Table:
    table = Table(title="voice to voice (end of the caller's speech -> first reply audio heard)")
    for column in ("path", "calls", "replied", "p50 s", "p95 s"):
        table.add_column(column)
    rows: dict[str, dict[str, object]] = results["voice_to_voice"]  # type: ignore[assignment]
    levels: dict[str, dict[str, object]] = results["calls_at_once"]  # type: ignore[assignment]
    named = [*rows.items()]
    named += [
        (f"phone, {k} at once ({'holds' if _holds(s) else 'does not hold'})", s) for k, s in levels.items()
    ]
    for name, s in named:
        table.add_row(
            name, str(s["calls"]), str(s["replied"]), str(s.get("p50_s", "-")), str(s.get("p95_s", "-"))
        )
    return table


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--calls", type=int, nargs="+", default=[1, 2, 3], help="calls at once to try")
    args.add_argument("--clips", type=int, default=10, help="the first N English clips")
    args.add_argument("--skip-calls", action="store_true", help="only the WER table")
    args.add_argument("--skip-wer", action="store_true", help="only the calls")
    options = args.parse_args()
    clips = english()[: options.clips]
    results: dict[str, object] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not options.skip_calls:
        console.print(f"voice to voice on {len(clips)} clips, each by phone then by the edge client")
        load_before = os.getloadavg()[0]
        results.update(calls(clips, options.calls))
        load = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        results["load_1min"] = load
        console.print(_latency_table(results))
        console.print(
            f"holds {results['holds_calls']} call(s) at once with replies under {HOLDS_UNDER_S:g} s"
            f" (every call answered, p95 under {HOLDS_UNDER_S:g} s;"
            f" tried {', '.join(map(str, options.calls))} at once)"
        )
        console.print(f"the machine's load (1 min) before and after: {load[0]} and {load[1]}")
    if not options.skip_wer:
        results["wer"] = wer_rows(clips)
        table = Table(title="STT word error rate on the English clips")
        for column in ("condition", "clips", "WER"):
            table.add_column(column)
        for row in results["wer"]:  # type: ignore[attr-defined]
            table.add_row(str(row["condition"]), str(row["clips"]), f"{row['wer']:.3f}")
        console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    console.print(f"written {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
