"""The edge client's logic without services: endpointing, what was heard, file clocks, the STT buffer."""

from __future__ import annotations

import asyncio
import re
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from conversation.endpointing import Edge, Endpointer
from conversation.links import SttLink
from conversation.messages import AudioChunk
from conversation.player import Reply
from conversation.settings import DEFAULT_BARGE_IN_MS, DEFAULT_MIN_SPEECH_MS
from edge_client.config import EdgeSettings, from_args, parser
from edge_client.files import WavInput, WavOutput
from foundation.audio import FRAME_MS
from foundation.channels import Security
from harness.edge import silence, write_wav
from harness.speech import english
from tests.noise import burst
from voice.stt.v1 import stt_pb2

FRAME_BYTES = 960


def _frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def test_the_endpointer_finds_one_utterance_with_its_bounds() -> None:
    rec = english()[4]
    endpointer = Endpointer(aggressiveness=2, min_speech_ms=DEFAULT_MIN_SPEECH_MS, silence_ms=600)
    boundaries = [b for f in _frames(silence(1.0) + rec.pcm() + silence(1.0)) if (b := endpointer.push(f))]
    assert [b.edge for b in boundaries] == [Edge.START, Edge.END]
    start_ms, end_ms = boundaries[0].frame * FRAME_MS, boundaries[1].frame * FRAME_MS
    assert (
        960 <= start_ms <= 1500
        and 1000 + rec.duration_s * 1000 - 700 <= end_ms <= 1000 + rec.duration_s * 1000
    )


def test_silence_and_a_click_are_not_speech() -> None:
    endpointer = Endpointer(aggressiveness=2, min_speech_ms=DEFAULT_MIN_SPEECH_MS, silence_ms=600)
    click = (np.sin(np.arange(480) / 3) * 20000).astype("<i2").tobytes()
    assert not [
        x for f in [*_frames(silence(1.0)), click, *_frames(silence(1.0))] if (x := endpointer.push(f))
    ]


def test_speech_resampled_through_24_khz_ends_where_it_did() -> None:
    """A Realtime client's 24 kHz audio: resampling leaves a bit or two of noise over digital
    silence, which webrtcvad alone took for voice (the turn ended 170-270 ms late)."""
    rec = english()[4]
    pcm = np.frombuffer(silence(1.0) + rec.pcm() + silence(1.0), dtype="<i2")
    there = soxr.resample(pcm, 16_000, 24_000)
    back = np.asarray(soxr.resample(np.asarray(there, dtype="<i2"), 24_000, 16_000), dtype="<i2").tobytes()
    edges = []
    for audio in (pcm.tobytes(), back):
        endpointer = Endpointer(aggressiveness=2, min_speech_ms=DEFAULT_MIN_SPEECH_MS, silence_ms=600)
        edges.append([(b.edge, b.frame) for f in _frames(audio) if (b := endpointer.push(f))])
    assert edges[0] == edges[1]
    noise = np.random.default_rng(0).integers(-1, 2, 16_000 * 2).astype("<i2").tobytes()
    endpointer = Endpointer(aggressiveness=2, min_speech_ms=DEFAULT_MIN_SPEECH_MS, silence_ms=600)
    heard = [b for f in _frames(noise) if (b := endpointer.push(f))]
    assert not heard


def test_heard_text_follows_the_played_samples() -> None:
    reply = Reply(1)
    reply.keep(AudioChunk(1, bytes(2000), "Sure, I can help."))
    reply.keep(AudioChunk(1, bytes(2400), "Here is how it works for you."))
    for played, heard in (
        (0, ""),
        (1000, "Sure, I can help."),
        (1600, "Sure, I can help. Here is how it"),
        (5000, "Sure, I can help. Here is how it works for you."),
    ):
        reply.played = played
        assert reply.heard() == heard


def test_the_recorded_output_follows_the_input_clock(tmp_path: Path) -> None:
    out = WavOutput(tmp_path / "out.wav", 22050)
    out.advance(0.5)
    out.write(b"\x10\x00" * 2205)  # 100 ms
    out.advance(0.03)
    out.advance(0.5)
    out.close()
    with wave.open(str(tmp_path / "out.wav")) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert len(audio) == round(1.03 * 22050)
    assert np.flatnonzero(audio)[0] == round(0.5 * 22050) and len(np.flatnonzero(audio)) == 2205
    assert out.played_samples == 2205


async def test_a_fast_input_waits_while_held(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "in.wav", b"\x01\x00" * 16000)
    held = [False]
    mic = WavInput(wav, fast=True, hold=lambda: held[0])
    frames: list[bytes] = []
    async for frame in mic.frames():
        frames.append(frame)
        held[0] = len(frames) in range(5, 10)
        if mic.ended:
            mic.stop()
    assert b"".join(f for f in frames if any(f))[:32000] == b"\x01\x00" * 16000
    assert sum(1 for f in frames if not any(f)) == 5


async def test_stt_audio_is_kept_until_its_final_arrives_and_goes_only_on_the_live_stream() -> None:
    link = SttLink("127.0.0.1:1", Security(), lambda final: None, lambda note: None, max_buffer_s=10)
    for _ in range(10):
        link.send_audio(b"\x01\x00" * 480)
    link.end_utterance()
    for _ in range(3):
        link.send_audio(b"\x02\x00" * 480)
    first: asyncio.Queue[Any] = asyncio.Queue()
    link._outbox = first
    link._on_open()  # a stream opens: all that is pending goes on it, in order
    requests = link._requests(first)
    sent = [await anext(requests) for _ in range(15)]
    assert sent[0].HasField("config") and sent[11].HasField("end_of_utterance")
    # The final covers the first 10 frames: they and their end of utterance are forgotten.
    link._acknowledge(stt_pb2.SpeechRecognitionResult(transcript="x", is_final=True, end_ms=250))
    assert [i.audio for i in link._pending] == [b"\x02\x00" * 480] * 3
    # A new stream sends what is left again, first; the old stream's iterator gets nothing new.
    second: asyncio.Queue[Any] = asyncio.Queue()
    link._outbox = second
    link._on_open()
    link.send_audio(b"\x03\x00" * 480)
    assert first.empty()
    again = link._requests(second)
    assert [(await anext(again)).WhichOneof("request") for _ in range(5)] == ["config"] + [
        "audio_content"
    ] * 4


def test_a_cough_is_not_voiced_long_enough_to_barge_in() -> None:
    """A short burst and its quiet tail: voiced time stays short; speech keeps adding up."""
    endpointer = Endpointer(2, DEFAULT_MIN_SPEECH_MS, silence_ms=600)
    voiced = []
    for frame in _frames(silence(0.3) + burst("cough", 150) + silence(0.6)):
        endpointer.push(frame)
        voiced.append(endpointer.voiced_ms(2 * DEFAULT_BARGE_IN_MS))
        assert not endpointer.barges_in(DEFAULT_BARGE_IN_MS)
    assert max(voiced) < DEFAULT_BARGE_IN_MS
    assert endpointer.quiet_ms() >= 400
    for frame in _frames(english()[0].pcm()[: 16000 * 2]):
        endpointer.push(frame)
    assert endpointer.barges_in(DEFAULT_BARGE_IN_MS)


def test_the_end_of_the_users_own_turn_is_no_barge_in() -> None:
    """The canceller, converging, asks for 1 s of voice: its 2 s window must not reach into the turn."""
    endpointer = Endpointer(2, DEFAULT_MIN_SPEECH_MS, silence_ms=600)
    edges = [x.edge for f in _frames(english()[0].pcm() + silence(0.7)) if (x := endpointer.push(f))]
    assert edges[-1] is Edge.END
    longer = DEFAULT_BARGE_IN_MS + 700
    assert endpointer.barges_in(longer)  # the user's own words, before the 600 ms of silence
    assert not endpointer.barges_in(longer, listened_ms=FRAME_MS)
    for frame in _frames(english()[1].pcm()[: 16000 * 2 * 2]):  # 2 s of speech
        endpointer.push(frame)
    assert endpointer.barges_in(longer, listened_ms=700 + 2000)


def test_a_pause_inside_the_turn_resumes_and_the_turn_ends_once() -> None:
    first, second = english()[5], english()[6]
    endpointer = Endpointer(2, DEFAULT_MIN_SPEECH_MS, silence_ms=600, pause_ms=200)
    pcm = silence(0.5) + first.pcm() + silence(0.4) + second.pcm() + silence(1.0)
    edges = [(x.edge, x.frame * FRAME_MS) for f in _frames(pcm) if (x := endpointer.push(f))]
    assert edges[0][0] is Edge.START and edges[-1][0] is Edge.END
    assert [e for e, _ in edges].count(Edge.START) == 1 and [e for e, _ in edges].count(Edge.END) == 1
    gap_ms = (0.5 + first.duration_s) * 1000
    resumed = [ms for e, ms in edges if e is Edge.RESUME and gap_ms < ms < gap_ms + 700]
    paused = [ms for e, ms in edges if e is Edge.PAUSE and gap_ms - 700 < ms < gap_ms + 400]
    assert resumed and paused, edges


# Contradictory or meaningless endpointing settings, and what the refusal says.
REFUSED = [
    ({"turn_detector": "smart", "pause_ms": 200}, "--pause-ms works with --turn-detector silence or bounded"),
    ({"silence_ms": 600, "pause_ms": 600}, r"--pause-ms \(600\) must be shorter than --silence-ms \(600\)"),
    ({"silence_ms": 150, "pause_ms": 200}, r"--pause-ms \(200\) must be shorter than --silence-ms \(150\)"),
    ({"pause_ms": 900}, r"--pause-ms \(900\) must be shorter than --silence-ms \(600\)"),
    ({"silence_ms": 0}, "--silence-ms must be more than 0; leave it out for the turn detector's default"),
    ({"silence_ms": -5}, "--silence-ms must be more than 0"),
    ({"pause_ms": -1}, r"--pause-ms must be 0 \(off\) or more"),
]


def _flags(fields: dict[str, object]) -> list[str]:
    return [part for name, value in fields.items() for part in (f"--{name.replace('_', '-')}", str(value))]


@pytest.mark.parametrize(("fields", "said"), REFUSED)
def test_contradictory_endpointing_settings_are_refused_in_code(fields: dict[str, Any], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        EdgeSettings(**fields)


@pytest.mark.parametrize(("fields", "said"), REFUSED)
def test_contradictory_endpointing_flags_are_refused_with_the_reason(
    fields: dict[str, object], said: str, capsys: Any
) -> None:
    with pytest.raises(SystemExit) as exited:
        from_args(parser().parse_args(_flags(fields)))
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: voice-agent") and re.search(said, error), error


def test_left_out_endpointing_flags_take_the_turn_detectors_defaults() -> None:
    silence = from_args(parser().parse_args([]))
    assert (silence.silence_ms, silence.pause_ms) == (None, None)
    smart = from_args(
        parser().parse_args(["--turn-detector", "smart", "--silence-ms", "1200", "--pause-ms", "0"])
    )
    assert (smart.turn_detector, smart.silence_ms, smart.pause_ms) == ("smart", 1200, 0)
    held = from_args(parser().parse_args(["--silence-ms", "810", "--pause-ms", "300"]))
    assert (held.silence_ms, held.pause_ms) == (810, 300)
    # A silence no longer than the default pause is accepted: then no reply is held.
    assert EdgeSettings(silence_ms=150).pause_ms is None
