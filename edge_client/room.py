"""A simulated room: what the speaker plays comes back into the microphone.

The echo is the played audio delayed, filtered by a room impulse response
(a direct path followed by exponentially decaying noise, the reverberation)
and attenuated, plus a little noise. Both sides run at 16 kHz on one clock:
sample n of the microphone hears the speaker's samples up to n - delay.
"""

from __future__ import annotations

import numpy as np

from foundation.audio import RATE_HZ

DEFAULT_ECHO_DB = -6.0
DEFAULT_ECHO_DELAY_MS = 80
DEFAULT_RT60_S = 0.3
DEFAULT_NOISE_DBFS = -60.0
# Reverberation energy relative to the direct path.
_TAIL_DB = -3.0


def impulse_response(rt60_s: float, gain_db: float, seed: int = 0, rate_hz: int = RATE_HZ) -> np.ndarray:
    """A direct path then decaying noise, long enough to fall 60 dB; total energy ``gain_db``."""
    rng = np.random.default_rng(seed)
    n = max(2, round(rt60_s * rate_hz))
    t = np.arange(n) / rate_hz
    tail = rng.standard_normal(n) * 10 ** (-3 * t / rt60_s)  # -60 dB at rt60_s
    tail[0] = 0.0
    tail *= np.sqrt(10 ** (_TAIL_DB / 10) / np.sum(tail**2))
    h = tail
    h[0] = 1.0
    return np.asarray(h * 10 ** (gain_db / 20) / np.sqrt(np.sum(h**2)), dtype=np.float64)


class Room:
    """The speaker's audio in (``played``), the microphone's out (``mic``): near-end speech plus echo.

    ``played`` takes int16 PCM at 16 kHz as it is played; ``mic`` takes the user's int16
    audio for the next microphone samples and returns it with the echo and noise mixed in.
    The microphone may not run ahead of the speaker by more than ``delay_ms``: the echo of
    a sample that has not been played yet would be wrong, so that raises.
    """

    def __init__(
        self,
        echo_db: float = DEFAULT_ECHO_DB,
        delay_ms: float = DEFAULT_ECHO_DELAY_MS,
        rt60_s: float = DEFAULT_RT60_S,
        noise_dbfs: float = DEFAULT_NOISE_DBFS,
        seed: int = 0,
    ) -> None:
        self.echo_db = echo_db
        self.delay_samples = round(delay_ms * RATE_HZ / 1000)
        self.response = impulse_response(rt60_s, echo_db, seed)
        self._rng = np.random.default_rng(seed + 1)
        self._noise = 10 ** (noise_dbfs / 20) * 32768 / np.sqrt(3)  # uniform noise of that RMS
        # Played samples from index _far_start on (older ones no longer reach the microphone).
        self._far = np.zeros(len(self.response) + self.delay_samples, dtype=np.float64)
        self._far_start = -len(self._far)
        self._mic_at = 0  # index of the next microphone sample

    @property
    def played_samples(self) -> int:
        return self._far_start + len(self._far)

    @property
    def mic_samples(self) -> int:
        return self._mic_at

    def played(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        self._far = np.concatenate([self._far, samples])

    def echo(self, count: int) -> np.ndarray:
        """The echo in the next ``count`` microphone samples (float, int16 scale); moves the clock on."""
        first, last = self._mic_at - self.delay_samples, self._mic_at + count - 1 - self.delay_samples
        if last >= self.played_samples:
            raise RuntimeError(
                f"the microphone is {last - self.played_samples + 1} samples ahead of the speaker's echo"
            )
        taps = len(self.response)
        window = self._far[first - taps + 1 - self._far_start : last + 1 - self._far_start]
        self._mic_at += count
        keep = self._mic_at - self.delay_samples - taps + 1 - self._far_start
        if keep > 0:
            self._far, self._far_start = self._far[keep:], self._far_start + keep
        return np.asarray(np.convolve(window, self.response, mode="valid"), dtype=np.float64)

    def mic(self, near: bytes) -> bytes:
        samples = np.frombuffer(near, dtype="<i2").astype(np.float64)
        noise = self._rng.uniform(-self._noise, self._noise, len(samples))
        mixed = samples + self.echo(len(samples)) + noise
        return bytes(np.clip(np.round(mixed), -32768, 32767).astype("<i2").tobytes())
