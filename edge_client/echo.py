"""Echo cancellation: the speaker's own sound taken out of the microphone (WebRTC AEC3).

The far end is exactly what the speaker hands to its device, in order, silence
included; ``played()`` takes it from any thread (the audio callback's) and only
queues it. ``clean()`` runs where the microphone frames are read: it first gives
the canceller the far end queued so far, then the microphone frame, both in 10 ms
pieces at 16 kHz. The delay between the two is a hint from the devices' latencies;
AEC3 finds the exact delay itself.

The adaptive filter needs a few seconds of the agent's speech to converge. Until
then its residue can sound like a user, so ``barge_in_ms()`` asks for longer speech
before the agent lets itself be interrupted.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

import numpy as np

from edge_client.audio_io import PcmResampler

RATE_HZ = 16000
CHUNK_SAMPLES = RATE_HZ // 100  # the canceller's 10 ms frame
# Far-end speech heard before the canceller counts as converged (LiveKit waits 3 s).
CONVERGE_S = 2.0
# Extra speech needed to interrupt the agent while the canceller converges.
CONVERGING_BARGE_IN_MS = 700
# Far-end frames quieter than this carry no echo worth measuring.
_ACTIVE_DBFS = -50.0
_INSTALL = "pip install 'voice-agent[edge]' (the livekit package brings WebRTC's echo canceller)"


def _dbfs(samples: np.ndarray) -> float:
    power = float(np.mean(samples.astype(np.float64) ** 2)) / 32768**2 if samples.size else 0.0
    return 10 * math.log10(max(power, 1e-12))


class EchoCanceller:
    """WebRTC's echo canceller (AEC3) for 16 kHz mono int16 microphone frames of any whole 10 ms.

    ``played`` may be called from the audio thread; everything else from one thread.
    ``erle_db`` is the echo return loss enhancement over recent far-end speech: microphone
    level over cleaned level (a lower bound while the user talks too).
    """

    def __init__(self, noise_suppression: bool = False) -> None:
        try:
            from livekit import rtc
        except ImportError as err:
            raise ImportError(f"echo cancellation needs the livekit package: {_INSTALL}") from err
        self._rtc: Any = rtc
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True, noise_suppression=noise_suppression, high_pass_filter=True
        )
        self._queue: deque[tuple[bytes, int]] = deque()  # (pcm, rate) from the audio thread
        self._resamplers: dict[int, PcmResampler] = {}
        self._far = bytearray()  # 16 kHz far end not yet given to the canceller (< 10 ms)
        self._lock = threading.Lock()
        self.output_latency_s = 0.0
        self.input_latency_s = 0.0
        self._delay_ms = -1
        self.far_active_s = 0.0  # far-end speech heard so far
        self._far_level: deque[float] = deque(maxlen=50)  # last 0.5 s of far-end levels (dBFS)
        self._mic_power = self._out_power = 0.0  # smoothed over active far end

    def played(self, pcm: bytes, rate_hz: int = RATE_HZ) -> None:
        """What the speaker just handed to the device (int16 at ``rate_hz``): any thread, never blocks."""
        self._queue.append((pcm, rate_hz))

    def set_latency(self, *, output_s: float | None = None, input_s: float | None = None) -> None:
        """The devices' latest latencies (PortAudio's timing); any thread."""
        if output_s is not None:
            self.output_latency_s = output_s
        if input_s is not None:
            self.input_latency_s = input_s

    @property
    def delay_ms(self) -> int:
        """From a far-end sample given to the canceller to its echo in a microphone frame, as hinted."""
        return max(0, round((self.output_latency_s + self.input_latency_s) * 1000))

    @property
    def converged(self) -> bool:
        return self.far_active_s >= CONVERGE_S

    @property
    def erle_db(self) -> float:
        return 10 * math.log10(max(self._mic_power, 1e-9) / max(self._out_power, 1e-9))

    def barge_in_ms(self, barge_in_ms: int) -> int:
        """The speech it takes to interrupt the agent: longer until the canceller has converged."""
        return barge_in_ms if self.converged else barge_in_ms + CONVERGING_BARGE_IN_MS

    def clean(self, frame: bytes) -> bytes:
        """A microphone frame (16 kHz int16, a multiple of 10 ms) with the echo taken out."""
        self._take_far()
        delay = self.delay_ms
        if delay != self._delay_ms:
            self._delay_ms = delay
            self._apm.set_stream_delay_ms(delay)
        chunk_bytes = CHUNK_SAMPLES * 2
        if len(frame) % chunk_bytes:
            raise ValueError(f"microphone frames must be whole 10 ms at {RATE_HZ} Hz, got {len(frame)} bytes")
        out = bytearray(frame)
        for at in range(0, len(out), chunk_bytes):
            piece = self._rtc.AudioFrame(out[at : at + chunk_bytes], RATE_HZ, 1, CHUNK_SAMPLES)
            self._apm.process_stream(piece)
            cleaned = bytes(piece.data.cast("B"))
            self._measure(frame[at : at + chunk_bytes], cleaned)
            out[at : at + chunk_bytes] = cleaned
        return bytes(out)

    def _take_far(self) -> None:
        while self._queue:
            pcm, rate_hz = self._queue.popleft()
            if rate_hz not in self._resamplers:
                self._resamplers[rate_hz] = PcmResampler(rate_hz, RATE_HZ)
            self._far += self._resamplers[rate_hz].feed(pcm)
        chunk_bytes = CHUNK_SAMPLES * 2
        whole = len(self._far) // chunk_bytes * chunk_bytes
        for at in range(0, whole, chunk_bytes):
            chunk = bytes(self._far[at : at + chunk_bytes])
            self._far_level.append(_dbfs(np.frombuffer(chunk, dtype="<i2")))
            self._apm.process_reverse_stream(self._rtc.AudioFrame(chunk, RATE_HZ, 1, CHUNK_SAMPLES))
        del self._far[:whole]

    def _measure(self, mic: bytes, cleaned: bytes) -> None:
        if not self._far_level or max(self._far_level) < _ACTIVE_DBFS:
            return
        self.far_active_s += CHUNK_SAMPLES / RATE_HZ
        a = 0.02  # about 0.5 s of 10 ms chunks
        mic_power = float(np.mean(np.frombuffer(mic, dtype="<i2").astype(np.float64) ** 2))
        out_power = float(np.mean(np.frombuffer(cleaned, dtype="<i2").astype(np.float64) ** 2))
        self._mic_power += a * (mic_power - self._mic_power)
        self._out_power += a * (out_power - self._out_power)
