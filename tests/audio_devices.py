"""Sound devices for tests on a machine without a sound card: a private JACK server on its dummy driver.

The dummy driver runs on the clock like a real card. Two JACK clients show up in PortAudio
(sounddevice) as devices: ``virtual_mic`` plays queued PCM into any stream that records from it,
and ``virtual_speaker`` records what streams play into it, each block stamped with its JACK frame
time so that recorded audio can be lined up with the moment something was done.

Nothing is installed here. CI provides jackd and the JACK bindings:
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jackd2 libportaudio2
    pip install JACK-Client==0.5.7
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RATE_HZ = 16000
# JACK period in frames (64 ms): smaller periods gave xruns on a loaded 2-core machine.
PERIOD_FRAMES = 1024
MIC_DEVICE = "virtual_mic"
SPEAKER_DEVICE = "virtual_speaker"
INSTALL = (
    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jackd2 libportaudio2"
    " && pip install JACK-Client==0.5.7"
)
_START_TIMEOUT_S = 10.0


class VirtualAudioUnavailable(RuntimeError):
    """jackd or the JACK bindings are missing, or the server did not start."""


@dataclass(frozen=True)
class Recording:
    """What reached ``virtual_speaker``: int16 samples, one JACK period per block.

    ``block_frames`` holds the JACK frame time at which each block was processed. A period lost
    to an xrun is skipped by the whole graph, so the audio stays continuous and only the clock
    jumps; ``index_at`` maps a clock reading onto the samples.
    """

    samples: np.ndarray
    block_frames: list[int]

    def index_at(self, frame_time: int) -> int:
        """The sample processed at JACK ``frame_time`` (or the next one, inside a skipped period)."""
        for i, start in enumerate(self.block_frames):
            if frame_time < start + PERIOD_FRAMES:
                return i * PERIOD_FRAMES + max(0, frame_time - start)
        return len(self.samples)


def to_port_float(pcm: bytes) -> np.ndarray:
    """int16 PCM as the float32 that PortAudio turns back into the same int16.

    PortAudio converts JACK's float samples to int16 as ``trunc(x * 32767)`` (no dither), so each
    value is set half a step away from zero; an exhaustive check over all int16 values holds.
    """
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return ((x + 0.5 * np.sign(x)) / 32767).astype(np.float32)


def from_port_float(samples: np.ndarray) -> np.ndarray:
    """PortAudio's int16 output as it arrives in JACK (``x / 32768``), back to int16 exactly."""
    return np.clip(np.round(samples.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)


class VirtualAudio:
    """The two virtual devices of a running JACK server."""

    mic_device = MIC_DEVICE
    speaker_device = SPEAKER_DEVICE
    rate_hz = RATE_HZ

    def __init__(self, jack: Any, server: str) -> None:
        self._lock = threading.Lock()
        self._pending = np.zeros(0, dtype=np.float32)
        self._blocks: list[tuple[int, np.ndarray]] = []
        self.xruns = 0
        self._mic = jack.Client(MIC_DEVICE, no_start_server=True, servername=server)
        self._mic_port = self._mic.outports.register("capture")
        self._speaker = jack.Client(SPEAKER_DEVICE, no_start_server=True, servername=server)
        self._speaker_port = self._speaker.inports.register("playback")
        self._mic.set_process_callback(self._feed)
        self._speaker.set_process_callback(self._record)
        self._mic.set_xrun_callback(self._count_xrun)
        self._mic.activate()
        self._speaker.activate()

    def close(self) -> None:
        for client in (self._mic, self._speaker):
            client.deactivate()
            client.close()

    def play(self, pcm: bytes) -> None:
        """Queue int16 PCM for the microphone; it is captured from the next JACK period on."""
        samples = to_port_float(pcm)
        with self._lock:
            self._pending = np.concatenate([self._pending, samples])

    @property
    def mic_pending_samples(self) -> int:
        return len(self._pending)

    def frame_time(self) -> int:
        """The JACK clock now, in frames: the same clock as ``Recording.start_frame``."""
        return int(self._speaker.frame_time)

    def reset(self) -> None:
        """Forget queued microphone audio and what was recorded so far."""
        with self._lock:
            self._pending = np.zeros(0, dtype=np.float32)
        self._blocks = []
        self.xruns = 0

    def recording(self) -> Recording:
        """Everything recorded since ``reset()``."""
        blocks = list(self._blocks)
        assert blocks, "nothing was recorded: is the JACK server running?"
        assert {len(b) for _, b in blocks} == {PERIOD_FRAMES}
        return Recording(from_port_float(np.concatenate([b for _, b in blocks])), [f for f, _ in blocks])

    # JACK's process thread: move one period, nothing else.
    def _feed(self, frames: int) -> None:
        out = self._mic_port.get_array()
        with self._lock:
            n = min(frames, len(self._pending))
            out[:n] = self._pending[:n]
            self._pending = self._pending[n:]
        out[n:] = 0.0

    def _record(self, frames: int) -> None:
        self._blocks.append((self._speaker.last_frame_time, self._speaker_port.get_array().copy()))

    def _count_xrun(self, delay_usecs: float) -> None:
        self.xruns += 1


def _import_jack() -> Any:
    try:
        return importlib.import_module("jack")  # JACK-Client ships no type hints
    except (ImportError, OSError) as err:  # OSError: libjack itself is missing
        raise VirtualAudioUnavailable(f"the JACK bindings are missing ({err}): {INSTALL}") from err


def _connect(jack: Any, server: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    jack.set_error_function(lambda message: None)  # "cannot connect" until the server is up
    try:
        while True:
            try:
                jack.Client("virtual_probe", no_start_server=True, servername=server).close()
                return
            except jack.JackOpenError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise VirtualAudioUnavailable(f"jackd did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
    finally:
        jack.set_error_function(None)


@contextmanager
def virtual_audio(devices_class: Callable[[Any, str], VirtualAudio] = VirtualAudio) -> Iterator[VirtualAudio]:
    """A JACK server with ``virtual_mic`` and ``virtual_speaker``, seen by sounddevice while open.

    PortAudio enumerates devices when it initialises, so sounddevice is re-initialised on the way
    in and out; open no streams across those points.
    """
    jackd = shutil.which("jackd")
    if jackd is None:
        raise VirtualAudioUnavailable(f"jackd is not installed: {INSTALL}")
    jack = _import_jack()
    import sounddevice as sd

    server = f"voice-test-{os.getpid()}"
    saved = {name: os.environ.get(name) for name in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "jackd.log"
        with log.open("wb") as out:
            # Real-time scheduling where permitted (it keeps xruns away on a loaded machine);
            # jackd carries on without it where it is not.
            command = [jackd, "-n", server, "--realtime", "-d", "dummy"]
            command += ["-r", str(RATE_HZ), "-p", str(PERIOD_FRAMES)]
            # Without the reservation variable jackd asks D-Bus for the (absent) sound card.
            env = os.environ | {"JACK_NO_AUDIO_RESERVATION": "1"}
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        devices: VirtualAudio | None = None
        try:
            _connect(jack, server, process, log)
            devices = devices_class(jack, server)
            # PortAudio's JACK host API reads the server name from the environment.
            os.environ["JACK_DEFAULT_SERVER"] = server
            os.environ["JACK_NO_START_SERVER"] = "1"
            sd._terminate()
            sd._initialize()
            yield devices
        finally:
            sd._terminate()
            if devices is not None:
                devices.close()
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            sd._initialize()
