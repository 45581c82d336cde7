"""The sound card: microphone frames in, jitter-buffered speaker audio out (PortAudio via sounddevice).

Both directions carry mono int16 PCM. A device that rejects the wanted sample rate is opened
at its own default rate, and the audio is resampled (soxr) on this side of the callback.
sounddevice is imported on first use, so the pure buffer classes work without PortAudio.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from foundation.audio import FRAME_MS, RATE_HZ, FrameSplitter, Resampler

if TYPE_CHECKING:
    from edge_client.echo import EchoCanceller

# Frames held for a consumer that falls behind (3 s); beyond that the oldest are dropped.
MIC_QUEUE_FRAMES = 100
# Speaker callback block: clear() takes effect within one block (plus the device's own latency).
SPEAKER_BLOCK_MS = 10
DEFAULT_JITTER_MS = 60
# The device's own buffer that still plays after everything was handed over (capped: some
# host APIs, JACK among them, report nonsense latencies).
_MAX_TAIL_S = 0.5
_PA_INVALID_SAMPLE_RATE = -9997

Kind = Literal["input", "output"]


class AudioDeviceError(Exception):
    """A sound device is missing, busy or refused; the message says what to do and lists the devices."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as err:  # the PortAudio shared library is missing
        raise AudioDeviceError(
            f"PortAudio is not installed ({err}). On Debian/Ubuntu: apt-get install libportaudio2"
        ) from err
    except ImportError as err:
        raise AudioDeviceError("sounddevice is not installed: pip install 'voice-agent[edge]'") from err
    return sounddevice


def _default_index(sd: Any, kind: Kind) -> int | None:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except (sd.PortAudioError, ValueError):
        return None


def list_devices() -> str:
    """The input and output devices with their indexes; ``*`` marks the defaults."""
    sd = _sounddevice()
    devices, hostapis = sd.query_devices(), sd.query_hostapis()
    lines: list[str] = []
    for kind in ("input", "output"):
        channels, default = f"max_{kind}_channels", _default_index(sd, kind)
        lines.append(f"{kind.capitalize()} devices:")
        rows = [d for d in devices if d[channels] > 0]
        if not rows:
            lines.append("   (none: no sound card or sound server (PipeWire, PulseAudio, JACK) was found)")
        for d in rows:
            mark = "*" if d["index"] == default else " "
            lines.append(
                f" {mark}{d['index']:3d}  {d['name']}  ({hostapis[d['hostapi']]['name']},"
                f" {d[channels]} ch, {d['default_samplerate']:.0f} Hz)"
            )
    return "\n".join(lines)


def resolve_device(spec: str | None, kind: Kind) -> int | str | None:
    """A device index from an index or part of a name ("USB", "pulse"); None or blank: the default."""
    if spec is None or not spec.strip():
        return None
    sd = _sounddevice()
    text = spec.strip()
    hostapis = sd.query_hostapis()
    devices = [d for d in sd.query_devices() if d[f"max_{kind}_channels"] > 0]
    if text.isdigit():
        if any(d["index"] == int(text) for d in devices):
            return int(text)
        raise AudioDeviceError(f"There is no {kind} device with index {text}.\n{list_devices()}")
    needle = text.casefold()
    exact = [d for d in devices if d["name"].casefold() == needle]
    matches = exact or [
        d for d in devices if needle in f"{d['name']}, {hostapis[d['hostapi']]['name']}".casefold()
    ]
    if len(matches) == 1:
        return int(matches[0]["index"])
    if not matches:
        raise AudioDeviceError(
            f"No {kind} device matches {text!r}. Give an index or part of a name from:\n{list_devices()}"
        )
    names = ", ".join(f"{d['index']} ({d['name']})" for d in matches)
    raise AudioDeviceError(f"{text!r} matches several {kind} devices: {names}. Give the index instead.")


def _open_error(kind: Kind, device: int | None, err: Exception) -> AudioDeviceError:
    if device is None and "device -1" in str(err):  # PortAudio's index for "no default"
        return AudioDeviceError(f"There is no default {kind} device. The devices are:\n{list_devices()}")
    what = f"the default {kind} device" if device is None else f"{kind} device {device}"
    hint = ""
    if any(
        word in str(err).lower() for word in ("busy", "unavailable", "permission", "denied", "host error")
    ):
        hint = (
            " Another program may hold it, or this user may lack access"
            " (on Linux: membership of the 'audio' group)."
        )
    return AudioDeviceError(f"Cannot open {what}: {err}.{hint} The devices are:\n{list_devices()}")


def _device_rate(kind: Kind, device: int | str | None, rate_hz: int) -> tuple[int | None, int]:
    """The device index and the rate to open it at: ``rate_hz``, or the device's own if it refuses that."""
    sd = _sounddevice()
    index = resolve_device(None if device is None else str(device), kind)
    assert not isinstance(index, str)
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=index, channels=1, dtype="int16", samplerate=rate_hz)
        return index, rate_hz
    except sd.PortAudioError as err:
        if len(err.args) < 2 or err.args[1] != _PA_INVALID_SAMPLE_RATE:
            raise _open_error(kind, index, err) from err
    except ValueError as err:
        raise _open_error(kind, index, err) from err
    own_hz = int(sd.query_devices(index, kind)["default_samplerate"])
    try:
        check(device=index, channels=1, dtype="int16", samplerate=own_hz)
    except (sd.PortAudioError, ValueError) as err:
        raise _open_error(kind, index, err) from err
    return index, own_hz


def _latency_s(stream: Any, late: float, early: float) -> float:
    """From ``early`` to ``late`` on PortAudio's clock, or the stream's own latency where it has no clock."""
    if late > 0 and early > 0:
        return max(0.0, min(late - early, _MAX_TAIL_S))
    return min(float(stream.latency), _MAX_TAIL_S) if stream is not None else 0.0


def _start_stream(
    kind: Kind, device: int | None, rate_hz: int, block_ms: int, callback: Callable[..., None]
) -> Any:
    sd = _sounddevice()
    stream_class = sd.RawInputStream if kind == "input" else sd.RawOutputStream
    try:
        stream = stream_class(
            device=device,
            samplerate=rate_hz,
            channels=1,
            dtype="int16",
            blocksize=rate_hz * block_ms // 1000,
            latency="low",
            dither_off=True,  # int16 in and out unchanged where the device is int16 or float
            callback=callback,
        )
        stream.start()
    except (sd.PortAudioError, ValueError) as err:
        raise _open_error(kind, device, err) from err
    return stream


class Microphone:
    """A sounddevice input stream at 16 kHz mono int16, read as 30 ms frames (480 samples).

    The PortAudio callback only copies the block and hands it to the event loop with
    ``call_soon_threadsafe``; it never blocks. Frames wait in a bounded queue: when the
    reader falls ``max_queued_frames`` behind, the oldest frame is dropped and counted in
    ``dropped_frames``. ``input_overflows`` counts blocks the device itself reported lost. An
    ``echo`` canceller is told the input latency (from capture to the callback) as it changes.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        max_queued_frames: int = MIC_QUEUE_FRAMES,
        echo: EchoCanceller | None = None,
    ) -> None:
        self.device = device
        self.echo = echo
        self.dropped_frames = 0
        self.input_overflows = 0
        self._max_queued = max_queued_frames
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[bytes | None] | None = None
        self._splitter: FrameSplitter | None = None
        self._stream: Any = None
        self._open = False

    async def __aenter__(self) -> Microphone:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self._max_queued + 1)  # one more place for the end marker
        index, rate_hz = await asyncio.to_thread(_device_rate, "input", self.device, RATE_HZ)
        self._splitter = FrameSplitter(rate_hz)
        self._open = True
        try:
            self._stream = await asyncio.to_thread(
                _start_stream, "input", index, rate_hz, FRAME_MS, self._on_block
            )
        except BaseException:
            self._open = False
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        if self._queue is not None:
            self._put(None)
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(stream.close)

    async def frames(self) -> AsyncIterator[bytes]:
        """960-byte frames (30 ms at 16 kHz) until the microphone is closed."""
        if self._queue is None:
            raise RuntimeError("open the microphone first: async with Microphone(...) as mic")
        while (frame := await self._queue.get()) is not None:
            yield frame

    def _on_block(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        # PortAudio's thread: copy, hand over, return.
        if status.input_overflow:
            self.input_overflows += 1
        if self.echo is not None:
            self.echo.set_latency(input_s=_latency_s(self._stream, time.currentTime, time.inputBufferAdcTime))
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has closed under a late callback
            self._loop.call_soon_threadsafe(self._take, bytes(indata))

    def _take(self, block: bytes) -> None:
        if not self._open:
            return
        assert self._splitter is not None
        for frame in self._splitter.feed(block):
            if self._put(frame):
                self.dropped_frames += 1

    def _put(self, item: bytes | None) -> bool:
        """Queue ``item``, dropping the oldest frame if the queue is full; True if one was dropped."""
        assert self._queue is not None
        dropped = self._queue.qsize() >= self._max_queued
        if dropped:
            self._queue.get_nowait()
        self._queue.put_nowait(item)
        return dropped


class JitterBuffer:
    """int16 PCM queued between writers and an audio callback; every method is thread-safe.

    A burst starts playing once ``start_samples`` are queued, or earlier once ``flush_pending()``
    says it is complete. When the queue runs dry the reader gets silence, and the next audio
    waits for ``start_samples`` again. The lock is held only to move at most one block of bytes.

    A write may say how many source samples it stands for (audio resampled for the device), so
    that ``played_source_samples`` counts in the writer's units and reaches exactly the total
    written once everything has played.
    """

    def __init__(self, start_samples: int) -> None:
        self.start_samples = max(1, start_samples)
        self._lock = threading.Lock()
        self._chunks: deque[tuple[bytes, int]] = deque()  # (pcm, source samples)
        self._head = 0  # bytes of the first chunk already read
        self._head_credited = 0  # its source samples already counted as played
        # Byte positions in everything ever written: written, read (or dropped), and the end
        # of the last burst that flush_pending() released.
        self._written = self._read = self._released = 0
        self._playing = False
        self._played = self._played_source = self._underruns = 0

    def write(self, pcm: bytes, source_samples: int | None = None) -> None:
        if len(pcm) % 2:
            raise ValueError("int16 PCM must have an even number of bytes")
        if pcm or source_samples:
            with self._lock:
                self._chunks.append((pcm, len(pcm) // 2 if source_samples is None else source_samples))
                self._written += len(pcm)

    def flush_pending(self) -> None:
        with self._lock:
            self._released = self._written

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._head = self._head_credited = 0
            self._read = self._released = self._written
            self._playing = False

    def read_into(self, out: memoryview) -> int:
        """Fill ``out`` (bytes) with queued audio, then silence; returns the samples of audio given."""
        size = len(out)
        copied = 0
        with self._lock:
            if not self._playing and self._written > self._read:
                self._playing = (
                    self._written - self._read >= 2 * self.start_samples or self._released > self._read
                )
            if self._playing:
                while copied < size and self._chunks:
                    copied += self._take(out, copied, size - copied)
                self._read += copied
                self._played += copied // 2
                if copied < size:
                    self._playing = False
                    if self._read > self._released:  # ran dry before the burst was complete
                        self._underruns += 1
        out[copied:size] = bytes(size - copied)
        return copied // 2

    def _take(self, out: memoryview, at: int, room: int) -> int:
        pcm, source = self._chunks[0]
        n = min(room, len(pcm) - self._head)
        out[at : at + n] = memoryview(pcm)[self._head : self._head + n]
        self._head += n
        credited = source if self._head == len(pcm) else source * self._head // len(pcm)
        self._played_source += credited - self._head_credited
        self._head_credited = credited
        if self._head == len(pcm):
            self._chunks.popleft()
            self._head = self._head_credited = 0
        return n

    @property
    def played_samples(self) -> int:
        """Samples of written audio handed to the reader (silence not counted)."""
        return self._played

    @property
    def played_source_samples(self) -> int:
        return self._played_source

    @property
    def buffered_samples(self) -> int:
        return (self._written - self._read) // 2

    @property
    def is_playing(self) -> bool:
        return self._playing

    @property
    def underruns(self) -> int:
        """Times the queue ran dry before its burst was complete."""
        return self._underruns


class Speaker:
    """A sounddevice output stream at ``sample_rate_hz`` mono int16, fed through a jitter buffer.

    ``write()`` queues PCM; the output callback (``SPEAKER_BLOCK_MS`` blocks, low latency) plays
    it and plays silence when the queue is empty. A new burst starts once ``jitter_ms`` is
    queued, or on ``flush_pending()`` when it is shorter. Sample counts are at ``sample_rate_hz``.
    An ``echo`` canceller hears every block handed to the device (silence too) and the output
    latency (from the callback to the sound leaving the device).
    """

    def __init__(
        self,
        device: int | str | None,
        sample_rate_hz: int,
        jitter_ms: int = DEFAULT_JITTER_MS,
        echo: EchoCanceller | None = None,
    ) -> None:
        self.device = device
        self.echo = echo
        self.sample_rate_hz = sample_rate_hz
        self.jitter_ms = jitter_ms
        self.device_rate_hz = sample_rate_hz
        self._buffer = JitterBuffer(sample_rate_hz * jitter_ms // 1000)
        self._resampler = Resampler(sample_rate_hz, sample_rate_hz)
        self._write_lock = threading.Lock()  # the resampler keeps state between writes
        self._stream: Any = None

    async def __aenter__(self) -> Speaker:
        index, self.device_rate_hz = await asyncio.to_thread(
            _device_rate, "output", self.device, self.sample_rate_hz
        )
        if self.device_rate_hz != self.sample_rate_hz:
            with self._write_lock:
                self._buffer = JitterBuffer(self.device_rate_hz * self.jitter_ms // 1000)
                self._resampler = Resampler(self.sample_rate_hz, self.device_rate_hz)
        self._stream = await asyncio.to_thread(
            _start_stream, "output", index, self.device_rate_hz, SPEAKER_BLOCK_MS, self._on_block
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(stream.close)
        self.clear()  # what was still queued will not be played

    def write(self, pcm: bytes) -> None:
        """Queue int16 PCM at ``sample_rate_hz``; never blocks."""
        with self._write_lock:
            source_samples = (self._resampler.carried_bytes + len(pcm)) // 2
            self._buffer.write(self._resampler.feed_pcm(pcm), source_samples)

    def flush_pending(self) -> None:
        """The burst is complete: play what is queued even if it is shorter than ``jitter_ms``."""
        with self._write_lock:
            self._buffer.write(self._resampler.flush().tobytes(), 0)
            self._buffer.flush_pending()

    def clear(self) -> None:
        """Barge-in: drop everything queued; the output is silent from the next callback block."""
        with self._write_lock:
            self._resampler.clear()
            self._buffer.clear()

    async def wait_drained(self, poll_s: float = SPEAKER_BLOCK_MS / 1000) -> None:
        """Return once everything written has been handed to the device."""
        while self._buffer.buffered_samples or self._buffer.is_playing:
            await asyncio.sleep(poll_s)

    @property
    def tail_s(self) -> float:
        """How long the device still plays after the last block was handed over (its latency)."""
        latency = float(self._stream.latency) if self._stream is not None else 0.0
        return min(latency, _MAX_TAIL_S)

    @property
    def played_samples(self) -> int:
        """Samples written and handed to the device since start (silence fill not counted)."""
        return self._buffer.played_source_samples

    @property
    def buffered_samples(self) -> int:
        return self._buffer.buffered_samples * self.sample_rate_hz // self.device_rate_hz

    @property
    def is_playing(self) -> bool:
        return self._buffer.is_playing

    @property
    def underruns(self) -> int:
        return self._buffer.underruns

    def _on_block(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        # PortAudio's thread: a copy out of the jitter buffer, and one for the echo canceller.
        self._buffer.read_into(memoryview(outdata).cast("B"))
        if self.echo is not None:
            self.echo.played(bytes(outdata), self.device_rate_hz)
            self.echo.set_latency(
                output_s=_latency_s(self._stream, time.outputBufferDacTime, time.currentTime)
            )


def level_dbfs(frame: bytes) -> float:
    """RMS level of int16 PCM in dB relative to full scale (-96 for digital silence)."""
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64) / 32768
    rms = math.sqrt(float(np.mean(samples**2))) if samples.size else 0.0
    return max(-96.0, 20 * math.log10(max(rms, 1e-12)))


def test_microphone(device: int | str | None, seconds: float = 3.0) -> None:
    """Show a live level meter (RMS dBFS) of the microphone for ``seconds``, then the peak."""
    asyncio.run(_meter(device, seconds))


async def _meter(device: int | str | None, seconds: float) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    peak = -96.0
    async with Microphone(device) as mic:
        frames = mic.frames()
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        console.print(f"Listening for {seconds:g} s: speak into the microphone.")
        with Live(_level_bar(-96.0), console=console, refresh_per_second=20, transient=True) as live:
            while loop.time() < end:
                try:
                    frame = await asyncio.wait_for(anext(frames), timeout=1.0)
                except TimeoutError:
                    raise AudioDeviceError(
                        "The input device delivered no audio for 1 s; try another device.\n" + list_devices()
                    ) from None
                level = level_dbfs(frame)
                peak = max(peak, level)
                live.update(_level_bar(level))
    verdict = "no sound reached the microphone" if peak < -60 else "the microphone hears"
    console.print(f"Peak level {peak:.1f} dBFS: {verdict}. Dropped frames: {mic.dropped_frames}.")


def _level_bar(level_dbfs: float, floor_db: float = -60.0, width: int = 40) -> Any:
    from rich.text import Text

    filled = round(width * min(1.0, max(0.0, (level_dbfs - floor_db) / -floor_db)))
    style = "red" if level_dbfs > -6 else "yellow" if level_dbfs > -20 else "green"
    return Text.assemble(("█" * filled, style), ("·" * (width - filled), "dim"), f" {level_dbfs:6.1f} dBFS")


def test_speaker(device: int | str | None, sample_rate_hz: int = 22050) -> None:
    """Play a 1 s 440 Hz tone through ``Speaker``."""
    asyncio.run(_play_tone(device, sample_rate_hz))


def tone(sample_rate_hz: int, seconds: float = 1.0, hz: float = 440.0, level: float = 0.3) -> bytes:
    """A sine as int16 PCM, faded in and out over 10 ms so that it does not click."""
    t = np.arange(round(sample_rate_hz * seconds)) / sample_rate_hz
    fade = np.clip(np.minimum(t, t[-1] - t) / 0.01, 0.0, 1.0)
    return bytes((np.sin(2 * np.pi * hz * t) * fade * level * 32767).astype("<i2").tobytes())


async def _play_tone(device: int | str | None, sample_rate_hz: int) -> None:
    from rich.console import Console

    console = Console()
    async with Speaker(device, sample_rate_hz) as speaker:
        console.print(
            f"Playing a 1 s 440 Hz tone at {sample_rate_hz} Hz (device at {speaker.device_rate_hz} Hz)."
        )
        speaker.write(tone(sample_rate_hz))
        speaker.flush_pending()
        await speaker.wait_drained()
        await asyncio.sleep(speaker.tail_s + 0.05)
    console.print(f"Played {speaker.played_samples / sample_rate_hz:.2f} s; underruns: {speaker.underruns}.")
