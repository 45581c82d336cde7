"""The edge client's microphone and speaker on virtual JACK devices that run in real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from edge_client import audio_io
from edge_client.audio_io import AudioDeviceError, Microphone, Speaker
from foundation.audio import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES
from harness.speech import recordings
from tests.audio_devices import MIC_DEVICE, RATE_HZ, SPEAKER_DEVICE, VirtualAudio, virtual_audio

# Device latency allowed before the audio shows up: a few JACK periods.
MAX_OFFSET_S = 0.5


@pytest.fixture(scope="module")
def jack_devices() -> Iterator[VirtualAudio]:
    with virtual_audio() as devices:
        yield devices


@pytest.fixture
def devices(jack_devices: VirtualAudio) -> VirtualAudio:
    jack_devices.reset()
    return jack_devices


@pytest.fixture(scope="module")
def speech() -> bytes:
    """A 3 s English sentence, 16 kHz mono int16."""
    return next(r for r in recordings() if r.id.endswith("0880")).pcm()


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def find(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where ``needle`` starts inside ``haystack`` (matched on its first 64 samples), or -1."""
    probe = needle[:64]
    windows = np.lib.stride_tricks.sliding_window_view(haystack, len(probe))
    hits = np.flatnonzero((windows == probe).all(axis=1))
    return int(hits[0]) if len(hits) else -1


async def played_out(speaker: Speaker) -> None:
    await speaker.wait_drained()
    await asyncio.sleep(0.3)  # the last JACK periods reach the recorder


async def test_microphone_yields_the_file_in_960_byte_frames_in_real_time(
    devices: VirtualAudio, speech: bytes
) -> None:
    wanted = len(speech) + int(MAX_OFFSET_S * RATE_HZ) * 2
    frames: list[bytes] = []
    async with Microphone(MIC_DEVICE) as mic:
        devices.play(speech)
        started = time.monotonic()
        async for frame in mic.frames():
            frames.append(frame)
            if len(frames) * FRAME_BYTES >= wanted:
                break
        elapsed = time.monotonic() - started
    assert {len(f) for f in frames} == {FRAME_BYTES}
    assert mic.dropped_frames == 0
    captured, expected = samples(b"".join(frames)), samples(speech)
    offset = find(captured, expected)
    assert 0 <= offset <= MAX_OFFSET_S * RATE_HZ, offset
    assert np.array_equal(captured[offset : offset + len(expected)], expected)  # bit-exact
    assert not captured[:offset].any() and not captured[offset + len(expected) :].any()
    assert elapsed >= 0.9 * wanted / 2 / RATE_HZ - MAX_OFFSET_S, f"not paced like a device: {elapsed:.2f} s"


async def test_a_reader_that_falls_behind_loses_the_oldest_frames(
    devices: VirtualAudio, speech: bytes
) -> None:
    async with Microphone(MIC_DEVICE, max_queued_frames=10) as mic:
        devices.play(speech)
        await asyncio.sleep(1.5)
        frames = mic.frames()
        kept = [await anext(frames) for _ in range(10)]
    assert mic.dropped_frames >= 1.5 / (FRAME_MS / 1000) - 10 - 10
    # What is left is the newest audio, still in one piece.
    expected = samples(speech)
    at = find(expected, samples(kept[0]))
    assert at >= 0.5 * RATE_HZ
    assert np.array_equal(samples(b"".join(kept)), expected[at : at + 10 * FRAME_SAMPLES])


async def test_speaker_output_is_bit_exact_and_counted(devices: VirtualAudio, speech: bytes) -> None:
    async with Speaker(SPEAKER_DEVICE, RATE_HZ) as speaker:
        for i in range(0, len(speech), 4410):  # odd-sized pieces, as a synthesiser sends them
            speaker.write(speech[i : i + 4410])
        speaker.flush_pending()
        await played_out(speaker)
    recorded, expected = devices.recording().samples, samples(speech)
    at = find(recorded, expected)
    assert at >= 0
    assert np.array_equal(recorded[at : at + len(expected)], expected)
    assert not recorded[:at].any() and not recorded[at + len(expected) :].any()
    assert speaker.played_samples == len(expected) and speaker.underruns == 0


async def test_a_short_burst_waits_for_flush_and_an_underrun_is_silence(
    devices: VirtualAudio, speech: bytes
) -> None:
    short = speech[32000:32640]  # 20 ms, less than the 60 ms jitter buffer
    first, second = speech[16000:25600], speech[48000:57600]  # 0.3 s each
    async with Speaker(SPEAKER_DEVICE, RATE_HZ, jitter_ms=60) as speaker:
        speaker.write(short)
        await asyncio.sleep(0.3)
        assert speaker.played_samples == 0 and not speaker.is_playing and speaker.buffered_samples == 320
        speaker.flush_pending()
        await played_out(speaker)
        assert speaker.played_samples == 320

        speaker.write(first)  # no flush: this burst runs dry
        await asyncio.sleep(0.8)
        assert speaker.underruns == 1 and not speaker.is_playing
        speaker.write(second)
        speaker.flush_pending()
        await played_out(speaker)
        assert speaker.played_samples == 320 + 2 * 4800
    recorded = devices.recording().samples
    starts = [find(recorded, samples(part)) for part in (short, first, second)]
    assert all(s >= 0 for s in starts) and starts == sorted(starts)
    ends = [s + len(part) // 2 for s, part in zip(starts, (short, first, second), strict=True)]
    for part, s, e in zip((short, first, second), starts, ends, strict=True):
        assert np.array_equal(recorded[s:e], samples(part))
    # Between and after the bursts: digital silence, not stale or repeated audio.
    assert not recorded[ends[0] : starts[1]].any() and not recorded[ends[1] : starts[2]].any()
    assert not recorded[ends[2] :].any()
    assert starts[2] - ends[1] >= 0.3 * RATE_HZ


async def test_clear_silences_the_output_within_100_ms(devices: VirtualAudio, speech: bytes) -> None:
    expected = samples(speech)
    async with Speaker(SPEAKER_DEVICE, RATE_HZ) as speaker:
        speaker.write(speech)
        while speaker.played_samples < RATE_HZ:
            await asyncio.sleep(0.005)
        cleared_at = devices.frame_time()
        speaker.clear()
        played = speaker.played_samples
        await asyncio.sleep(0.4)
        assert speaker.played_samples == played and speaker.buffered_samples == 0 and not speaker.is_playing
    recording = devices.recording()
    recorded = recording.samples
    at = find(recorded, expected)
    assert np.array_equal(recorded[at : at + played], expected[:played])
    assert not recorded[at + played :].any()
    after_clear = at + played - recording.index_at(cleared_at)  # samples that still came out
    assert after_clear / RATE_HZ * 1000 <= 100, after_clear


async def test_a_rate_the_device_refuses_is_resampled(devices: VirtualAudio) -> None:
    async with Speaker(SPEAKER_DEVICE, 22050) as speaker:
        assert speaker.device_rate_hz == RATE_HZ
        speaker.write(audio_io.tone(22050))
        speaker.flush_pending()
        await played_out(speaker)
    assert speaker.played_samples == 22050
    recorded = devices.recording().samples.astype(np.float64)
    sound = np.flatnonzero(np.abs(recorded) > 100)
    heard = recorded[sound[0] : sound[-1] + 1]
    assert abs(len(heard) - RATE_HZ) <= 0.02 * RATE_HZ
    assert abs(np.argmax(np.abs(np.fft.rfft(heard))) * RATE_HZ / len(heard) - 440) < 5


def test_the_command_line_checks(
    devices: VirtualAudio, speech: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = audio_io.list_devices()
    assert MIC_DEVICE in listing and SPEAKER_DEVICE in listing
    devices.play(speech)
    audio_io.test_microphone(MIC_DEVICE, seconds=1.5)
    assert "the microphone hears" in capsys.readouterr().out
    audio_io.test_speaker(SPEAKER_DEVICE)
    assert "Played 1.00 s" in capsys.readouterr().out
    assert np.abs(devices.recording().samples).max() > 5000


async def test_devices_are_found_by_name_or_index_and_misses_name_the_choices(devices: VirtualAudio) -> None:
    index = audio_io.resolve_device("VIRTUAL_MIC", "input")
    assert isinstance(index, int) and audio_io.resolve_device(str(index), "input") == index
    assert audio_io.resolve_device(None, "output") is None
    with pytest.raises(AudioDeviceError, match=SPEAKER_DEVICE):
        audio_io.resolve_device("no such card", "output")
    with pytest.raises(AudioDeviceError, match="no input device with index"):
        audio_io.resolve_device(str(audio_io.resolve_device(SPEAKER_DEVICE, "output")), "input")
    with pytest.raises(AudioDeviceError, match="several"):
        audio_io.resolve_device("jack", "input")  # also matches the host API's name
    with pytest.raises(AudioDeviceError, match=f"(?s)no input device with index.*{MIC_DEVICE}"):
        async with Microphone(audio_io.resolve_device(SPEAKER_DEVICE, "output")):
            pass
