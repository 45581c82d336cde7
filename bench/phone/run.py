"""The phone: voice-to-voice through Asterisk against the edge client, the calls this machine
holds at once, and speech recognition on narrowband, noisy lines with and without noise
suppression.

    python -m bench.phone.run [--calls 1 2 3] [--skip-calls] [--skip-wer]

(from the repository root, the stack and its phone profile up: ``make certs images-phone``,
``docker compose --profile phone up -d --wait``).

- Voice to voice: each English clip said by a pjsua2 softphone calling Asterisk (which hands the
  call to the gateway's AudioSocket door), from the end of the caller's speech to the first
  reply audio the caller hears; and the same clips through the edge client on files
  (``voice-agent --input``), in the same run.
- Calls at once: K calls placed together (each saying a clip), each one's voice-to-voice time;
  a K holds when its p95 stays under 2 s.
- WER: the clips through the STT service (the gateway's ``/v1/audio/transcriptions``) at
  16 kHz; band-limited to 300-3400 Hz and μ-law round-tripped at 8 kHz (a phone line); and with
  noise (white noise and a 120 Hz hum) mixed in at 10 and 0 dB SNR, with and without the
  gateway's noise suppression (WebRTC's, at 8 kHz, as the phone doors apply it).

Prints tables, writes bench/results/phone.json.
"""

from __future__ import annotations

import argparse
import io
import json
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
from harness.sip_caller import TICK_S, VOICED_LEVEL, Script, SipPhone
from harness.speech import REPO, Recording, corpus_wer, english
from services.gateway import mulaw

RESULTS = REPO / "bench" / "results" / "phone.json"
LINE_HZ = 8000
HOLDS_UNDER_S = 2.0
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
def _phone_latencies(phone: SipPhone, clips: list[Recording], folder: Path) -> list[float]:
    """Each clip's voice-to-voice time through Asterisk (s), its calls placed together."""
    scripts = []
    for i, clip in enumerate(clips):
        path = folder / f"clip-{i}.wav"
        path.write_bytes(
            _wav_bytes(float_to_pcm16(resample(pcm16_to_float(clip.pcm()), 16000, LINE_HZ)), LINE_HZ)
        )
        scripts.append(Script(first=path, quiet_s=2.0, max_s=40))
    latencies = []
    for clip, heard in zip(clips, phone.place(scripts, folder), strict=True):
        if heard.first_at < 0:
            continue
        speech_end = heard.first_at + _speech_end_s(clip.pcm(), 16000)
        voiced = [t for t, level in heard.levels if t > speech_end and level >= VOICED_LEVEL]
        if voiced:
            latencies.append(voiced[0] - speech_end - TICK_S)
    return latencies


def _edge_latency(clip: Recording, folder: Path) -> float | None:
    session = voice_agent(folder, clip.pcm() + bytes(16000 * 2 * 6))
    speech_end_ms = _speech_end_s(clip.pcm(), 16000) * 1000
    loud = session.audible()
    after = loud[loud > speech_end_ms]
    return float(after[0] - speech_end_ms) / 1000 if after.size else None


def _stats(values: list[float]) -> dict[str, object]:
    if not values:
        return {"n": 0}
    p95 = float(np.percentile(values, 95))
    return {"n": len(values), "p50_s": round(statistics.median(values), 3), "p95_s": round(p95, 3)}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--calls", type=int, nargs="+", default=[1, 2, 3], help="calls at once to try")
    args.add_argument("--skip-calls", action="store_true", help="only the WER table")
    args.add_argument("--skip-wer", action="store_true", help="only the calls")
    options = args.parse_args()
    clips = english()
    results: dict[str, object] = {}
    if not options.skip_calls:
        phone = SipPhone("caller", (REPO / "certs" / "sip-password").read_text().strip())
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            phone_s: list[float] = []
            edge_s: list[float] = []
            for i, clip in enumerate(clips):
                console.print(f"  voice to voice: clip {i + 1} of {len(clips)} (phone, then edge client)")
                phone_s += _phone_latencies(phone, [clip], folder)
                edge_dir = folder / f"edge-{i}"
                edge_dir.mkdir()
                if (latency := _edge_latency(clip, edge_dir)) is not None:
                    edge_s.append(latency)
            results["voice_to_voice"] = {"phone (Asterisk)": _stats(phone_s), "edge client": _stats(edge_s)}
            at_once = {}
            for k in options.calls:
                console.print(f"  {k} calls at once")
                latencies = []
                for start in range(0, len(clips) - k + 1, k):
                    latencies += _phone_latencies(phone, clips[start : start + k], folder)
                at_once[str(k)] = _stats(latencies)
            results["calls_at_once"] = at_once
        phone.close()
        table = Table(title="voice to voice (end of speech -> first reply audio heard)")
        for column in ("path", "n", "p50 s", "p95 s"):
            table.add_column(column)
        rows: dict[str, dict[str, object]] = results["voice_to_voice"]  # type: ignore[assignment]
        for name, s in rows.items():
            table.add_row(name, str(s["n"]), str(s.get("p50_s", "-")), str(s.get("p95_s", "-")))
        for k, s in at_once.items():
            holds = "holds" if float(str(s.get("p95_s", 99))) < HOLDS_UNDER_S else "too slow"
            table.add_row(
                f"{k} calls at once ({holds})",
                str(s["n"]),
                str(s.get("p50_s", "-")),
                str(s.get("p95_s", "-")),
            )
        console.print(table)
    if not options.skip_wer:
        results["wer"] = wer_rows(clips)
        table = Table(title="STT word error rate on the English clips")
        for column in ("condition", "clips", "WER"):
            table.add_column(column)
        for row in results["wer"]:  # type: ignore[attr-defined]
            table.add_row(str(row["condition"]), str(row["clips"]), f"{row['wer']:.3f}")
        console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    console.print(f"written {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
