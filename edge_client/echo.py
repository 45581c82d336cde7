"""Echo cancellation: the speaker's own sound taken out of the microphone (WebRTC AEC3).

The far end is exactly what the speaker hands to its device, in order, silence
included; ``played()`` takes it from any thread (the audio callback's) and only
queues it. ``clean()`` runs where the microphone frames are read: it first gives
the canceller the far end queued so far, then the microphone frame, both in 10 ms
pieces at 16 kHz. The delay between the two is a hint from the devices' latencies;
AEC3 finds the exact delay itself.

While the agent speaks, a frame the canceller cut by RESIDUE_GATE_DB or more, or
one left fainter than the echo the room makes of the far end's recent peak (less a
margin), is residue of the echo: webrtcvad would still call it speech, so it is
replaced by comfort noise. A user speaking over the agent is louder than that and
passes; one clearly louder than any echo passes even where the canceller's
suppressor, unsure at the start of double talk, would take the words out.

The adaptive filter needs a second or two of the agent's speech to converge. Until
then more residue gets through, so ``barge_in_ms()`` asks for longer speech before
the agent lets itself be interrupted.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from foundation.audio import (
    RATE_HZ,
    Resampler,
)

CHUNK_SAMPLES = RATE_HZ // 100  # the canceller's 10 ms frame
# The canceller counts as converged once it has heard CONVERGE_MIN_S of far-end speech and
# cuts its echo by CONVERGE_ERLE_DB, or in any case after CONVERGE_S (LiveKit waits 3 s).
CONVERGE_MIN_S = 1.0
CONVERGE_ERLE_DB = 20.0
CONVERGE_S = 3.0
# Extra speech needed to interrupt the agent while the canceller converges.
CONVERGING_BARGE_IN_MS = 700
# Far-end frames quieter than this carry no echo worth measuring.
_ACTIVE_DBFS = -50.0
# While the far end plays, a microphone frame the canceller cut by this much was echo: what
# is left is residue, which the VAD would still call speech, so it is silenced. A user
# speaking over the agent keeps the frame's level (less than this is cut) and passes.
RESIDUE_GATE_DB = 12.0
# Nor does a user speak to the microphone this quietly: a fainter frame is residue too.
RESIDUE_FLOOR_DBFS = -45.0
# Nor below the echo the far end's recent peak level makes in this room, less this margin:
# the canceller's transient slips (its residue at the microphone's level) stay under it.
RESIDUE_ECHO_MARGIN_DB = 12.0
# A frame cut this much is echo alone: it measures the room's echo gain.
_ECHO_ONLY_DB = 20.0
# Far-end levels (10 ms each) whose echo can still be in a microphone frame: the delay and
# most of the reverberation.
_ECHO_SPAN_CHUNKS = 25
# A microphone frame this much louder than the echo can be holds the user's voice.
NEAR_END_DB = 6.0
_INSTALL = "pip install 'voice-agent[edge]' (the livekit package brings WebRTC's echo canceller)"


def _dbfs(pcm: bytes | bytearray) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    power = float(np.dot(samples, samples)) / samples.size / 32768**2 if samples.size else 0.0
    return 10 * math.log10(max(power, 1e-12))


class EchoCanceller:
    """WebRTC's echo canceller (AEC3) for 16 kHz mono int16 microphone frames of any whole 10 ms.

    ``played`` may be called from the audio thread; everything else from one thread.
    ``erle_db`` is the echo return loss enhancement over recent far-end speech: microphone
    level over cleaned level (a lower bound while the user talks too).
    """

    def __init__(self, noise_suppression: bool = False, residue_gate: bool = True) -> None:
        try:
            from livekit import rtc
        except ImportError as err:
            raise ImportError(f"echo cancellation needs the livekit package: {_INSTALL}") from err
        self._rtc: Any = rtc
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True, noise_suppression=noise_suppression, high_pass_filter=True
        )
        self._queue: deque[tuple[bytes, int]] = deque()  # (pcm, rate) from the audio thread
        self._resamplers: dict[int, Resampler] = {}
        self._far = bytearray()  # 16 kHz far end not yet given to the canceller (< 10 ms)
        self.output_latency_s = 0.0
        self.input_latency_s = 0.0
        self._delay_ms = -1
        self.far_active_s = 0.0  # far-end speech heard so far
        self.converged = False
        self.residue_gate = residue_gate
        self.gated_frames = 0
        self.near_end_frames = 0
        self._floor: deque[float] = deque(maxlen=100)  # levels of the last 3 s of kept frames (dBFS)
        self._rng = np.random.default_rng(0)
        self._far_level: deque[float] = deque(maxlen=50)  # last 0.5 s of far-end levels (dBFS)
        self._echo_gain_db = -120.0  # microphone level over the far end's recent peak, when echo alone
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
    def erle_db(self) -> float:
        return 10 * math.log10(max(self._mic_power, 1e-12) / max(self._out_power, 1e-12))

    def barge_in_ms(self, barge_in_ms: int) -> int:
        """The speech it takes to interrupt the agent: longer until the canceller has converged."""
        return barge_in_ms if self.converged else barge_in_ms + CONVERGING_BARGE_IN_MS

    def clean(self, frame: bytes) -> bytes:
        """A microphone frame (16 kHz int16, a multiple of 10 ms) with the echo taken out."""
        chunk_bytes = CHUNK_SAMPLES * 2
        if not frame or len(frame) % chunk_bytes:
            raise ValueError(f"microphone frames must be whole 10 ms at {RATE_HZ} Hz, got {len(frame)} bytes")
        self._take_far()
        delay = self.delay_ms
        if delay != self._delay_ms:
            self._delay_ms = delay
            self._apm.set_stream_delay_ms(delay)
        out = bytearray(frame)
        for at in range(0, len(out), chunk_bytes):
            piece = self._rtc.AudioFrame(out[at : at + chunk_bytes], RATE_HZ, 1, CHUNK_SAMPLES)
            self._apm.process_stream(piece)
            out[at : at + chunk_bytes] = piece.data.cast("B")
        if not self._far_level or max(self._far_level) < _ACTIVE_DBFS:
            self._floor.append(_dbfs(out))
            return bytes(out)
        mic_db, out_db = _dbfs(frame), _dbfs(out)
        self._measure(len(frame) // 2 / RATE_HZ, mic_db, out_db)
        # The echo this frame can hold: the far end's peak over the echo's span, times the room's gain.
        far_db = max(list(self._far_level)[-_ECHO_SPAN_CHUNKS:])
        if mic_db - out_db >= _ECHO_ONLY_DB:
            gain_db = mic_db - far_db
            self._echo_gain_db = max(gain_db, self._echo_gain_db - 0.1)  # the peak, slowly let go
        expected_db = far_db + self._echo_gain_db
        if self.converged and out_db < mic_db - NEAR_END_DB and mic_db >= expected_db + NEAR_END_DB:
            # Louder than the echo can be: the user speaks over the agent, and the canceller's
            # suppressor, still unsure, takes the words out with the echo. Keep the microphone.
            self.near_end_frames += 1
            self._floor.append(out_db)
            return frame
        if self.residue_gate and (
            mic_db - out_db >= RESIDUE_GATE_DB
            or out_db < max(RESIDUE_FLOOR_DBFS, expected_db - RESIDUE_ECHO_MARGIN_DB)
        ):
            self.gated_frames += 1
            return self._comfort_noise(len(frame) // 2)
        self._floor.append(out_db)
        return bytes(out)

    def _comfort_noise(self, samples: int) -> bytes:
        # Not digital silence: webrtcvad weighs sound against the noise it has heard, and
        # after silence it would call the next faint residue speech.
        floor = min(self._floor, default=-90.0)
        noise = self._rng.standard_normal(samples) * 10 ** (floor / 20) * 32768
        return bytes(np.clip(np.round(noise), -32768, 32767).astype("<i2").tobytes())

    def _take_far(self) -> None:
        while self._queue:
            pcm, rate_hz = self._queue.popleft()
            if rate_hz not in self._resamplers:
                self._resamplers[rate_hz] = Resampler(rate_hz, RATE_HZ)
            self._far += self._resamplers[rate_hz].feed_pcm(pcm)
        chunk_bytes = CHUNK_SAMPLES * 2
        whole = len(self._far) // chunk_bytes * chunk_bytes
        if not whole:
            return
        far = bytes(self._far[:whole])
        del self._far[:whole]
        chunks = np.frombuffer(far, dtype="<i2").reshape(-1, CHUNK_SAMPLES).astype(np.float64)
        power = np.mean(chunks**2, axis=1) / 32768**2
        self._far_level.extend(10 * np.log10(np.maximum(power, 1e-12)))
        for at in range(0, whole, chunk_bytes):
            chunk = far[at : at + chunk_bytes]
            self._apm.process_reverse_stream(self._rtc.AudioFrame(chunk, RATE_HZ, 1, CHUNK_SAMPLES))

    def _measure(self, seconds: float, mic_db: float, out_db: float) -> None:
        """ERLE, smoothed over about 0.5 s of far-end speech, and whether the canceller has converged."""
        self.far_active_s += seconds
        a = min(1.0, seconds / 0.5)
        self._mic_power += a * (10 ** (mic_db / 10) - self._mic_power)
        self._out_power += a * (10 ** (out_db / 10) - self._out_power)
        if not self.converged:
            # Once converged it stays so: the room rarely changes, and a user who talks over
            # the agent lowers the measure without any echo coming back.
            self.converged = self.far_active_s >= CONVERGE_S or (
                self.far_active_s >= CONVERGE_MIN_S and self.erle_db >= CONVERGE_ERLE_DB
            )
