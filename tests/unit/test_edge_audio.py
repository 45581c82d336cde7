"""The speaker's jitter buffer, the resampler and the microphone's frame splitter, without a device."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_client.audio_io import JitterBuffer, Speaker, level_dbfs, tone
from foundation.audio import FRAME_BYTES, FrameSplitter, Resampler


def pcm(values: range | list[int]) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def read(buffer: JitterBuffer, samples: int) -> tuple[bytes, int]:
    out = bytearray(b"\xaa" * 2 * samples)  # garbage, so that silence must be written
    given = buffer.read_into(memoryview(out))
    return bytes(out), given


def test_a_burst_starts_once_the_jitter_is_buffered() -> None:
    buffer = JitterBuffer(start_samples=100)
    buffer.write(pcm(range(1, 61)))
    assert read(buffer, 10) == (bytes(20), 0) and not buffer.is_playing
    buffer.write(pcm(range(61, 121)))
    out, given = read(buffer, 50)
    assert given == 50 and out == pcm(range(1, 51)) and buffer.is_playing
    assert buffer.played_samples == 50 and buffer.buffered_samples == 70


def test_a_short_burst_plays_on_flush_pending() -> None:
    buffer = JitterBuffer(start_samples=100)
    buffer.write(pcm(range(1, 31)))
    assert read(buffer, 40)[1] == 0
    buffer.flush_pending()
    out, given = read(buffer, 40)
    assert given == 30 and out == pcm(range(1, 31)) + bytes(20)
    assert not buffer.is_playing and buffer.underruns == 0


def test_an_underrun_gives_silence_and_waits_for_the_jitter_again() -> None:
    buffer = JitterBuffer(start_samples=20)
    buffer.write(pcm(range(1, 26)))
    assert read(buffer, 20)[1] == 20
    out, given = read(buffer, 20)
    assert given == 5 and out == pcm(range(21, 26)) + bytes(30)
    assert buffer.underruns == 1 and not buffer.is_playing
    assert read(buffer, 20) == (bytes(40), 0)
    buffer.write(pcm(range(100, 110)))
    assert read(buffer, 20)[1] == 0  # 10 samples, less than the jitter
    buffer.write(pcm(range(110, 120)))
    assert read(buffer, 20) == (pcm(range(100, 120)), 20)


def test_a_buffer_that_drains_exactly_keeps_playing_if_more_comes_in_time() -> None:
    buffer = JitterBuffer(start_samples=20)
    buffer.write(pcm(range(20)))
    assert read(buffer, 20)[1] == 20 and buffer.is_playing
    buffer.write(pcm(range(5)))  # less than the jitter, but the burst is still running
    assert read(buffer, 5)[1] == 5 and buffer.underruns == 0


def test_bursts_written_back_to_back_play_without_a_gap() -> None:
    buffer = JitterBuffer(start_samples=10)
    buffer.write(pcm(range(1, 16)))
    buffer.flush_pending()
    buffer.write(pcm(range(16, 21)))  # the next sentence arrives while the first plays
    out, given = read(buffer, 25)
    assert given == 20 and out == pcm(range(1, 21)) + bytes(10)
    assert buffer.underruns == 1  # the second burst was never flushed


def test_clear_drops_everything_at_once() -> None:
    buffer = JitterBuffer(start_samples=10)
    buffer.write(pcm(range(1, 101)))
    read(buffer, 10)
    buffer.clear()
    assert read(buffer, 10) == (bytes(20), 0)
    assert buffer.played_samples == 10 and buffer.buffered_samples == 0 and not buffer.is_playing
    assert buffer.underruns == 0
    buffer.write(pcm(range(5)))
    buffer.flush_pending()
    assert read(buffer, 10)[1] == 5 and buffer.played_samples == 15


def test_source_samples_are_credited_in_the_writers_units() -> None:
    buffer = JitterBuffer(start_samples=1)
    buffer.write(pcm(range(100)), source_samples=138)  # say 22.05 kHz audio resampled to 16 kHz
    buffer.write(b"", source_samples=7)  # the resampler held these back
    buffer.write(pcm(range(10)), source_samples=0)  # and gave them out at the end
    buffer.flush_pending()
    read(buffer, 50)
    assert buffer.played_source_samples == 69
    read(buffer, 100)
    assert buffer.played_source_samples == 145 and buffer.played_samples == 110


def test_odd_byte_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        JitterBuffer(1).write(b"\x01\x02\x03")


def test_a_writer_and_a_reader_on_two_threads_lose_nothing() -> None:
    buffer = JitterBuffer(start_samples=1)
    data = np.random.default_rng(0).integers(-32768, 32767, 200_000, dtype=np.int16).tobytes()
    out = bytearray()

    def writer() -> None:
        for i in range(0, len(data), 1234):
            buffer.write(data[i : i + 1234])
        buffer.flush_pending()

    thread = threading.Thread(target=writer)
    thread.start()
    block = memoryview(bytearray(320))
    while thread.is_alive() or buffer.buffered_samples:
        given = buffer.read_into(block)
        out += block[: 2 * given]
    thread.join()
    assert bytes(out) == data and buffer.played_samples == len(data) // 2


def test_the_speaker_counts_odd_sized_writes_in_whole_samples() -> None:
    speaker = Speaker(None, 16000, jitter_ms=10)  # never opened: no device involved
    audio = pcm(range(1000))
    for i in range(0, len(audio), 333):
        speaker.write(audio[i : i + 333])
    speaker.flush_pending()
    assert speaker.buffered_samples == 1000


def test_resampler_passes_equal_rates_through_and_carries_odd_bytes() -> None:
    resampler = Resampler(16000, 16000)
    audio = pcm(range(1000))
    assert b"".join(resampler.feed_pcm(audio[i : i + 333]) for i in range(0, len(audio), 333)) == audio


@pytest.mark.parametrize("rate_hz", [22050, 48000])
def test_resampler_keeps_duration_and_pitch(rate_hz: int) -> None:
    resampler = Resampler(rate_hz, 16000)
    audio = tone(rate_hz)
    out = b"".join(resampler.feed_pcm(audio[i : i + 999]) for i in range(0, len(audio), 999))
    out += resampler.flush().tobytes()
    samples = np.frombuffer(out, dtype="<i2").astype(np.float64)
    assert abs(len(samples) - 16000) <= 2
    assert abs(np.argmax(np.abs(np.fft.rfft(samples))) * 16000 / len(samples) - 440) < 2
    # After flush the resampler starts afresh: the same tone comes out the same length again.
    again = resampler.feed_pcm(audio) + resampler.flush().tobytes()
    assert abs(len(again) // 2 - 16000) <= 2


def test_frames_are_960_bytes_whatever_the_device_blocks() -> None:
    splitter = FrameSplitter(16000)
    audio = np.arange(5000, dtype="<i2").tobytes()
    frames = [f for i in range(0, len(audio), 700) for f in splitter.feed(audio[i : i + 700])]
    assert {len(f) for f in frames} == {FRAME_BYTES}
    assert b"".join(frames) == audio[: len(frames) * FRAME_BYTES] and len(frames) == 10


def test_a_48_khz_device_gives_16_khz_frames() -> None:
    splitter = FrameSplitter(48000)
    audio = tone(48000, seconds=0.99)
    frames = [f for i in range(0, len(audio), 2880) for f in splitter.feed(audio[i : i + 2880])]
    assert 31 <= len(frames) <= 33  # 0.99 s of 30 ms frames, less the filter delay


def test_levels_in_dbfs() -> None:
    assert level_dbfs(bytes(960)) == -96.0
    full = (np.sin(np.arange(480) * 2 * np.pi / 48) * 32767).astype("<i2").tobytes()
    assert abs(level_dbfs(full) + 3.01) < 0.05
