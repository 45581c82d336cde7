"""The whole agent: the edge client on files against the composed services."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import soxr

from conversation import Conversation
from conversation.settings import DEFAULT_SILENCE_MS
from edge_client.config import EdgeSettings
from foundation.audio import FRAME_MS, pcm16_to_float
from harness.edge import (
    Frames,
    Session,
    command,
    converse,
    frames_of,
    loud_windows_ms,
    over_the_reply,
    played_in_order,
    played_up_to,
    read_session,
    silence,
    speaking_for,
    then_quiet,
    voice_agent,
    while_,
)
from harness.speech import REPO, Recording, backchannels, english, interruptions, normalize, wer
from harness.tap import Taps, tapped
from harness.turns import cut, sentences, to_pcm, whole
from tests.containers.conftest import compose
from tests.noise import recorded
from voice.llm.v1 import llm_pb2
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

MAX_CLIP_WER = 0.3
SMART = ("--turn-detector", "smart")
# Bounded: a turn judged done at its pause ends before the silence would end it. The silence
# ended it 540 ms after speech_end (the end of the last voiced frame); the verdict, measured,
# 377-423 ms (n=5).
EARLY_END_MS = DEFAULT_SILENCE_MS - 3 * FRAME_MS
# A backchannel over the reply lets it go on this soon after the word ends, on the words decoded
# at its pause. With a 1000 ms end-of-turn silence, 227-442 ms (n=10; 182-549 ms, n=17, with
# the default 600 ms); on the final after that silence instead (no pause interims), 995-1087 ms.
BACKCHANNEL_SILENCE_MS = 1000
BACKCHANNEL_RESUME_MS = 800
# Over the reply: its audio comes no faster than it plays, this far ahead (a real-time service).
# At full speed the 60 tokens' audio had all come before the pause in 5 of 9 runs.
TTS_LEAD_S = 1.0


async def _transcribe(audio: np.ndarray, rate_hz: int) -> str:
    pcm = (np.clip(soxr.resample(audio, rate_hz, 16000), -1, 1) * 32767).astype("<i2").tobytes()
    async with grpc.aio.insecure_channel("127.0.0.1:50051") as channel:
        reply = await stt_pb2_grpc.SttServiceStub(channel).Recognize(
            stt_pb2.RecognizeRequest(
                config=stt_pb2.RecognitionConfig(sample_rate_hz=16000), audio_content=pcm
            )
        )
    return " ".join(r.transcript for r in reply.results)


async def test_two_utterances_make_two_spoken_turns(stack: None, tmp_path: Path) -> None:
    first, second = english()[7], english()[4]
    pcm = silence(0.5) + first.pcm() + silence(14.0) + second.pcm() + silence(1.0)
    session = await asyncio.to_thread(voice_agent, tmp_path, pcm, "--fast", "--max-tokens", "40")
    assert [t["interrupted"] for t in session.turns] == [False, False], session.stderr
    for turn, rec in zip(session.turns, (first, second), strict=True):
        assert wer(rec.text, str(turn["user_text"])) <= MAX_CLIP_WER, turn
        assert str(turn["agent_text"]).strip(), turn
        t = turn["t_ms"]
        assert isinstance(t, dict)
        assert (
            t["speech_start"]
            < t["speech_end"]
            <= t["transcript_final"]
            <= t["first_token"]
            <= t["first_audio"]
        )
    # The reply is speech, and it plays only once the user's turn is over (not at its first pause).
    t0 = session.turns[0]["t_ms"]
    assert isinstance(t0, dict)
    audible = session.audible()
    assert audible.size and audible[0] >= t0["end_of_turn"] - FRAME_MS, (audible[:3], t0)
    t1 = session.turns[1]["t_ms"]
    assert isinstance(t1, dict)
    reply = session.output[: int(session.output_rate_hz * t1["speech_start"] / 1000)]
    heard = await _transcribe(reply, session.output_rate_hz)
    assert wer(str(session.turns[0]["agent_text"]), heard) <= 0.5, (session.turns[0]["agent_text"], heard)


async def test_speaking_over_the_reply_cuts_it_short(stack: None, tmp_path: Path) -> None:
    """The user speaks once the reply has played for a second: it stops, and only the heard part is kept."""
    question, interruption = english()[0], english()[4]
    settings = EdgeSettings(system_prompt="Tell a long story of at least six sentences.")
    spoke_at: list[float] = []
    frames = over_the_reply(question.pcm(), interruption.pcm() + silence(1.0), spoke_at)
    session, taps = await _tapped_converse(settings, tmp_path, frames)
    first = session.turns[0]
    t = first["t_ms"]
    assert isinstance(t, dict) and spoke_at, session.turns
    assert first["interrupted"] is True and t["first_audio"] < spoke_at[0] < t["barge_in"]
    # The barge-in comes the barge-in time after the user started speaking (plus the detector's start)...
    assert t["barge_in"] - spoke_at[0] <= settings.barge_in_ms + 200
    # ...and playback stops within 100 ms of it.
    audible = session.audible()
    assert audible[(audible > t["first_audio"]) & (audible < t["barge_in"])].size > 0
    late = audible[(audible > t["barge_in"] + 100) & (audible < t["barge_in"] + 2000)]
    assert late.size == 0, f"audio still playing at {late[:5]} ms, barge-in at {t['barge_in']:.0f} ms"
    # What the user heard is the start of what the model wrote, and the chat service was told so:
    # its context keeps only that.
    heard, turn_id = str(first["agent_text"]), taps.llm.turn_id(str(first["user_text"]))
    written = taps.llm.reply(turn_id)
    assert heard and written.startswith(heard.split()[0]) and len(heard) < len(written), (heard, written)
    _kept_only_what_was_heard(taps, turn_id, heard, at=1)
    assert wer(interruption.text, str(session.turns[1]["user_text"])) <= MAX_CLIP_WER


async def test_a_later_reply_cut_short_keeps_only_what_was_heard(stack: None, tmp_path: Path) -> None:
    """Without held replies (as with --turn-detector smart): the second reply, cut after a second."""
    first, question, interruption = english()[4], english()[0], english()[6]
    settings = EdgeSettings(system_prompt="Answer in at least six sentences.", max_tokens=60, pause_ms=0)

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        for frame in frames_of(first.pcm() + silence(1.0)):
            yield frame
        async for frame in while_(lambda: conversation.busy):
            yield frame
        for frame in frames_of(question.pcm() + silence(1.0)):
            yield frame
        async for frame in while_(lambda: not speaking_for(conversation, 1000), 15):
            yield frame
        for frame in frames_of(interruption.pcm() + silence(1.0)):
            yield frame
        async for frame in while_(lambda: conversation.busy):
            yield frame

    session, taps = await _tapped_converse(settings, tmp_path, frames, timeout_s=180)
    assert [t["interrupted"] for t in session.turns] == [False, True, False], session.turns
    # What was heard of the second reply is counted from its own first sample, not the first reply's.
    heard, turn_id = str(session.turns[1]["agent_text"]), taps.llm.turn_id(str(session.turns[1]["user_text"]))
    written = taps.llm.reply(turn_id)
    assert heard and written.startswith(heard.split()[0]) and len(heard) < len(written), (heard, written)
    _kept_only_what_was_heard(taps, turn_id, heard, at=3)


async def _tapped_converse(
    settings: EdgeSettings,
    tmp_path: Path,
    frames: Frames,
    timeout_s: float = 120,
    tts_lead_s: float | None = None,
) -> tuple[Session, Taps]:
    """``converse`` with taps in front of the services: what they received and delivered."""
    async with tapped(settings, tts_lead_s) as (tapped_settings, taps):
        _, session = await converse(tapped_settings, tmp_path, frames, timeout_s)
    return session, taps


def _kept_only_what_was_heard(taps: Taps, turn_id: int, heard: str, at: int) -> None:
    """The chat service was told what was heard of turn ``turn_id``'s reply (a Truncate), and its
    context keeps that as the reply, message ``at`` of its history."""
    told = [t.heard_text for t in taps.llm.truncated() if t.turn_id == turn_id]
    assert told == [heard], (heard, taps.llm.truncated())
    history = taps.llm.history()
    assert history[at].role == llm_pb2.ROLE_ASSISTANT and history[at].content == heard, history


def _one_turn_asked(taps: Taps, user_text: str) -> int:
    """The chat service was asked ``user_text`` and kept no other turn (what it was asked and
    then withdrawn it was told to forget); the turn's id."""
    turn_id = taps.llm.turn_id(user_text)
    retracted = set(taps.llm.retracted())
    kept = {turn.turn_id for turn in taps.llm.user_turns() if turn.turn_id not in retracted}
    assert kept == {turn_id}, (taps.llm.user_turns(), retracted)
    return turn_id


async def _over_the_reply(tmp_path: Path, sound: bytes, **settings: Any) -> tuple[Session, Taps, float]:
    """``sound`` (16 kHz PCM) once the reply has played for a second, then 4 s of silence; when
    (ms) the sound began."""
    question = english()[0]
    story = "Tell a long story of at least six sentences."
    edge = EdgeSettings(system_prompt=story, max_tokens=60, **settings)
    limit_s = 60 if edge.resume_ms < 4000 else 0
    spoke_at: list[float] = []
    frames = over_the_reply(question.pcm(), sound + silence(4.0), spoke_at, limit_s)
    # The reply's audio comes as it plays, so some of it comes while the reply is paused.
    session, taps = await _tapped_converse(edge, tmp_path, frames, timeout_s=180, tts_lead_s=TTS_LEAD_S)
    assert spoke_at, session.turns
    return session, taps, spoke_at[0]


def _played_whole_across_a_pause(session: Session, taps: Taps) -> None:
    """The one reply was heard once, as synthesized: up to its pause, then from that sample the
    moment it resumed; the model's context keeps all of it."""
    assert len(session.turns) == 1, session.turns
    turn = session.turns[0]
    t = turn["t_ms"]
    assert isinstance(t, dict)
    assert turn["interrupted"] is False and "barge_in" not in t, turn
    assert t["first_audio"] < t["paused"] < t["resumed"], t
    turn_id = _one_turn_asked(taps, str(turn["user_text"]))
    history = taps.llm.history()
    assert [m.role for m in history] == [llm_pb2.ROLE_USER, llm_pb2.ROLE_ASSISTANT], history
    assert history[1].content.strip() == taps.llm.reply(turn_id).strip() == turn["agent_text"], (
        history,
        turn,
    )
    # The reference is the audio the speech service delivered for the turn, not the client's copy.
    stretches = played_in_order(session.samples, taps.tts.audio(turn_id))
    ms = 1000 / session.output_rate_hz
    # Silent from its pause on; going on from the sample it stopped at when it resumed, or, if
    # that audio was still being synthesized then, when it came.
    after = next((i for i, s in enumerate(stretches) if s.at * ms >= t["paused"]), 0)
    assert after, f"nothing played after the pause at {t['paused']} ms: {stretches}"
    stopped, resumed = stretches[after - 1].until * ms, stretches[after].at * ms
    came = session.ms_at(taps.tts.delivered_at(turn_id, stretches[after].first))
    going_on = max(float(t["resumed"]), came)
    assert stopped <= t["paused"] + FRAME_MS + 1 and abs(resumed - going_on) <= 2 * FRAME_MS, (
        stopped,
        resumed,
        going_on,
        t,
    )
    assert not session.samples[stretches[-1].until :].any(), "something played after the reply"


async def test_a_sound_with_no_words_pauses_the_reply_and_it_goes_on_from_there(
    stack: None, tmp_path: Path
) -> None:
    """Paper crumpled (1.1 s, voiced throughout): no words, so the reply goes on."""
    session, taps, _ = await _over_the_reply(tmp_path, recorded("trash-empty"))
    _played_whole_across_a_pause(session, taps)
    assert "backchannels" not in session.turns[0]


async def test_a_sound_over_the_reply_stays_paused_without_a_resume(stack: None, tmp_path: Path) -> None:
    """The same sound with --resume-ms longer than the session: the reply stays paused, neither
    going on nor cut short as a turn."""
    session, taps, _ = await _over_the_reply(tmp_path, recorded("trash-empty"), resume_ms=600_000)
    assert len(session.turns) == 1, session.turns
    turn = session.turns[0]
    t = turn["t_ms"]
    assert isinstance(t, dict)
    assert turn["interrupted"] is False and "paused" in t and "resumed" not in t, turn
    turn_id = _one_turn_asked(taps, str(turn["user_text"]))
    assert not taps.llm.truncated(), taps.llm.truncated()
    # The start of the reply as synthesized played, and from its pause to the end nothing did.
    reply = taps.tts.audio(turn_id)
    stretches = played_up_to(session.samples, reply)
    stopped = stretches[-1]
    ms = 1000 / session.output_rate_hz
    assert stopped.end < len(reply) and stopped.until * ms <= t["paused"] + FRAME_MS + 1, (stopped, t)
    assert not session.samples[stopped.until :].any(), "the reply went on playing"


@pytest.mark.parametrize("rec", backchannels()[:2], ids=lambda r: f"{r.text}-{r.id}")
async def test_a_backchannel_over_the_reply_lets_it_go_on(
    stack: None, tmp_path: Path, rec: Recording
) -> None:
    """A listener's "okay" (or "yes") pauses the reply, is judged a backchannel on the words decoded
    at its pause, and the reply goes on from where it paused, well before the silence after it
    would end a turn; it is no turn and the model never sees it.

    Now and then (2 runs in 29) the STT service decodes no words at the word's pause; the
    conversation is then held once more, so that what is checked is the core's use of them."""
    for again in (False, True):
        session, taps, spoke_at = await _over_the_reply(
            tmp_path, rec.pcm(), silence_ms=BACKCHANNEL_SILENCE_MS
        )
        if again or any(not r.is_final and r.transcript.strip() for r in taps.stt.results()):
            break
    _played_whole_across_a_pause(session, taps)
    turn = session.turns[0]
    t = turn["t_ms"]
    assert isinstance(t, dict) and t["paused"] < t["backchannel"] <= t["resumed"], t
    # Resumed on the words decoded at the word's pause, not on its final after the silence that
    # ends a turn. The end of the word is the recording's last 10 ms louder than -40 dBFS.
    voice = loud_windows_ms(pcm16_to_float(rec.pcm()), 16000, -40.0)
    late_ms = t["resumed"] - (spoke_at + float(voice[-1]) + 10)
    stt = [(r.is_final, r.transcript) for r in taps.stt.results()]
    assert late_ms <= BACKCHANNEL_RESUME_MS, (late_ms, t, "the STT service delivered:", stt)
    said = turn.get("backchannels")
    assert isinstance(said, list) and len(said) == 1 and wer(rec.text, str(said[0])) == 0, turn


async def test_the_same_word_stops_the_reply_when_it_is_no_backchannel(stack: None, tmp_path: Path) -> None:
    """With no backchannels (--backchannels ""), the same "okay" is a turn: the reply stops for it."""
    rec = backchannels()[0]
    session, taps, _ = await _over_the_reply(tmp_path, rec.pcm(), backchannels=())
    assert [t["interrupted"] for t in session.turns] == [True, False], session.turns
    assert wer(rec.text, str(session.turns[1]["user_text"])) == 0, session.turns
    heard, turn_id = str(session.turns[0]["agent_text"]), taps.llm.turn_id(str(session.turns[0]["user_text"]))
    _kept_only_what_was_heard(taps, turn_id, heard, at=1)


SHORT_INTERRUPTIONS = ("archer_select11", "norsemen-valkyrie_ack2", "rott_no")  # "what?", "hey!", "no"


@pytest.mark.parametrize(
    "rec", [r for r in interruptions() if r.id in SHORT_INTERRUPTIONS], ids=lambda r: f"{r.text}-{r.id}"
)
async def test_a_short_real_interruption_stops_the_reply(stack: None, tmp_path: Path, rec: Recording) -> None:
    """A user's "what?", "hey!" or "no" over the reply is no backchannel, however short: the
    reply stops, the word is the next turn, and the model hears it after what was played."""
    session, taps, _ = await _over_the_reply(tmp_path, rec.pcm())
    assert [t["interrupted"] for t in session.turns] == [True, False], session.turns
    t = session.turns[0]["t_ms"]
    assert isinstance(t, dict) and "resumed" not in t and "backchannels" not in session.turns[0], t
    # Its words, each said at least once: Whisper now and then repeats a lone short word ("No... No...").
    said = normalize(str(session.turns[1]["user_text"])).split()
    assert said and set(said) == set(normalize(rec.text).split()), session.turns
    heard, turn_id = str(session.turns[0]["agent_text"]), taps.llm.turn_id(str(session.turns[0]["user_text"]))
    _kept_only_what_was_heard(taps, turn_id, heard, at=1)
    history = taps.llm.history()
    assert [m.role for m in history[:3]] == [llm_pb2.ROLE_USER, llm_pb2.ROLE_ASSISTANT, llm_pb2.ROLE_USER]
    assert normalize(history[2].content).split() == said, history


async def test_the_end_of_turn_model_ends_a_whole_sentence_at_once(stack: None, tmp_path: Path) -> None:
    """A complete sentence is judged over at its first pause, well before 600 ms of silence."""
    rec = sentences()[1]
    pcm = silence(0.5) + to_pcm(whole(rec)) + silence(2.5)
    session = await asyncio.to_thread(voice_agent, tmp_path, pcm, "--max-tokens", "12", *SMART)
    assert len(session.turns) == 1, session.stderr
    t = session.turns[0]["t_ms"]
    assert isinstance(t, dict)
    assert t["end_of_turn"] - t["speech_end"] < DEFAULT_SILENCE_MS, t
    assert wer(rec.text, str(session.turns[0]["user_text"])) <= MAX_CLIP_WER
    # The reply starts within 600 ms of the user's last words; they are no barge-in.
    assert "barge_in" not in t and "resumed" not in t, t


async def test_a_pause_before_the_last_words_does_not_end_the_turn(stack: None, tmp_path: Path) -> None:
    """Cut mid-sentence by a 700 ms pause: the model hears it is unfinished, and the turn goes on."""
    rec = sentences()[0]
    head = cut(rec)
    rest = pcm16_to_float(rec.pcm())[len(head) :]
    pcm = silence(0.5) + to_pcm(head) + silence(0.7) + to_pcm(rest) + silence(2.5)
    session = await asyncio.to_thread(voice_agent, tmp_path, pcm, "--max-tokens", "12", *SMART)
    assert len(session.turns) == 1, session.stderr
    assert wer(rec.text, str(session.turns[0]["user_text"])) <= MAX_CLIP_WER, session.turns


async def test_a_plainly_finished_sentence_is_answered_before_the_silence_would_end_it(
    stack: None, tmp_path: Path
) -> None:
    """Bounded: the words decoded at the pause end a sentence and the model is sure, so the turn ends
    there, and the reply prepared on those words plays, without waiting 600 ms of silence."""
    rec = english()[4]
    settings = EdgeSettings(max_tokens=20, turn_detector="bounded")

    session, taps = await _tapped_converse(
        settings, tmp_path, then_quiet(silence(0.3) + rec.pcm() + silence(2.0))
    )
    assert len(session.turns) == 1, session.turns
    turn = session.turns[0]
    assert wer(rec.text, str(turn["user_text"])) <= MAX_CLIP_WER, turn
    judged = turn.get("judged")
    assert isinstance(judged, list) and judged and judged[-1]["verdict"] == "done", turn
    t = turn["t_ms"]
    assert isinstance(t, dict)
    assert t["held"] <= t["released"] == t["end_of_turn"], t
    # Ended at the verdict, not by the silence after it.
    assert abs(t["end_of_turn"] - judged[-1]["at_ms"]) <= FRAME_MS, (t, judged)
    assert t["end_of_turn"] - t["speech_end"] <= EARLY_END_MS, t
    audible = session.audible()
    assert audible.size and audible[0] >= t["end_of_turn"] - FRAME_MS, (audible[:3], t)
    # The reply was made from the words at the pause; the final's words were not asked again.
    _one_turn_asked(taps, str(turn["user_text"]))
    assert [m.role for m in taps.llm.history()] == [llm_pb2.ROLE_USER, llm_pb2.ROLE_ASSISTANT]


async def test_a_pause_after_plainly_unfinished_words_waits_for_the_rest(stack: None, tmp_path: Path) -> None:
    """The same 700 ms pause, after "...selfish is": the bounded detector reads the words decoded at
    the pause as unfinished and waits up to 1600 ms (the silence detector's 600 ms cut it)."""
    rec = sentences()[0]
    head = cut(rec)
    rest = pcm16_to_float(rec.pcm())[len(head) :]
    pcm = silence(0.5) + to_pcm(head) + silence(0.7) + to_pcm(rest) + silence(2.5)
    session = await asyncio.to_thread(
        voice_agent, tmp_path, pcm, "--max-tokens", "12", "--turn-detector", "bounded"
    )
    assert len(session.turns) == 1, session.stderr
    turn = session.turns[0]
    assert wer(rec.text, str(turn["user_text"])) <= MAX_CLIP_WER, turn
    judged = turn.get("judged")
    assert isinstance(judged, list) and judged, turn
    # Judged at the pause on the words so far (fewer than the turn's), plainly unfinished.
    at_pause, whole_turn = str(judged[0]["words"]).split(), str(turn["user_text"]).split()
    assert judged[0]["verdict"] == "unfinished" and len(at_pause) < len(whole_turn), judged
    # The turn's transcript is one decode of it all, not fragments joined.
    assert "withdrawn" not in turn, turn


async def test_words_spoken_as_the_reply_starts_are_heard(stack: None, tmp_path: Path) -> None:
    """A 900 ms pause mid-sentence: the reply starts, and the last words, spoken over it, are a turn."""
    rec = sentences()[0]
    head = cut(rec)
    rest = pcm16_to_float(rec.pcm())[len(head) :]
    pcm = silence(0.5) + to_pcm(head) + silence(0.9) + to_pcm(rest) + silence(2.5)
    session = await asyncio.to_thread(voice_agent, tmp_path, pcm, "--max-tokens", "30")
    said = " ".join(str(turn["user_text"]) for turn in session.turns)
    assert len(session.turns) == 2 and wer(rec.text, said) <= MAX_CLIP_WER, session.turns
    assert session.turns[0]["interrupted"] is True, session.turns


def test_an_utterance_spoken_while_stt_restarts_is_not_lost(stack: None, tmp_path: Path) -> None:
    first, second = english()[5], english()[4]
    pcm = silence(0.3) + first.pcm() + silence(16.0) + second.pcm() + silence(1.0)
    out, report = tmp_path / "out.wav", tmp_path / "turns.jsonl"
    proc = subprocess.Popen(
        command(tmp_path, pcm, "--max-tokens", "30"),
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (report.exists() and report.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        # Turn 1 is done; the second utterance begins about 16 s after the first: stop STT across it.
        compose("stop", "stt")
        time.sleep(max(0.0, 18.5 - (time.monotonic() - (deadline - 60))))
        compose("up", "-d", "--wait", "stt")
        _, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "stt service" in stderr and "unreachable" in stderr, stderr[-3000:]
    session = read_session(out, report, stderr)
    assert len(session.turns) == 2, session.turns
    assert wer(second.text, str(session.turns[1]["user_text"])) <= MAX_CLIP_WER, session.turns


def test_typed_turns_are_spoken(stack: None, tmp_path: Path) -> None:
    out, report = tmp_path / "out.wav", tmp_path / "turns.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "edge_client", "--text", "--output", str(out), "--report", str(report),
         "--max-tokens", "20"],
        cwd=REPO, input="Hello, who are you?\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    session = read_session(out, report, done.stderr)
    assert [t["user_text"] for t in session.turns] == ["Hello, who are you?"]
    assert str(session.turns[0]["agent_text"]).strip() and session.audible().size > 50


async def test_a_held_reply_plays_only_once_the_turn_is_over(stack: None, tmp_path: Path) -> None:
    """Prepared at the 200 ms pause, held through 3 s of silence, played the moment the turn ends."""
    rec = english()[4]
    settings = EdgeSettings(max_tokens=20, pause_ms=200, silence_ms=3000)
    _, session = await converse(settings, tmp_path, then_quiet(silence(0.3) + rec.pcm() + silence(3.5)))
    assert len(session.turns) == 1, session.turns
    t = session.turns[0]["t_ms"]
    assert isinstance(t, dict)
    # Generated while held: the first words came long before the turn was over...
    assert t["speech_end"] < t["held"] < t["first_token"] < t["released"] == t["end_of_turn"], t
    assert t["end_of_turn"] - t["speech_end"] >= 3000 - 2 * FRAME_MS, t
    # ...and nothing was heard before it; then the reply played at once.
    audible = session.audible()
    assert audible.size and audible[0] >= t["end_of_turn"] - FRAME_MS, (audible[:3], t)
    assert t["first_audio"] - t["end_of_turn"] <= 2 * FRAME_MS and audible[0] <= t["first_audio"] + 200, t


async def test_a_held_reply_is_withdrawn_when_the_user_goes_on(stack: None, tmp_path: Path) -> None:
    """A reply prepared at a 900 ms pause is withdrawn when the user goes on: one turn, one reply."""
    first, second = english()[1], english()[4]
    settings = EdgeSettings(max_tokens=20, pause_ms=200, silence_ms=1500)

    session, taps = await _tapped_converse(
        settings,
        tmp_path,
        then_quiet(silence(0.3) + first.pcm() + silence(0.9) + second.pcm() + silence(2.0)),
    )
    assert len(session.turns) == 1, session.turns
    turn = session.turns[0]
    assert wer(f"{first.text} {second.text}", str(turn["user_text"])) <= MAX_CLIP_WER
    # The report names the withdrawn reply: the first part, prepared and dropped.
    withdrawn = turn.get("withdrawn")
    assert isinstance(withdrawn, list) and len(withdrawn) == 1, turn
    assert wer(first.text, str(withdrawn[0]["user_text"])) <= MAX_CLIP_WER, withdrawn
    w = withdrawn[0]["t_ms"]
    assert w["held"] < w["withdrawn"] and "first_audio" not in w, w
    # The chat service was told to forget the withdrawn turn: its context has the whole turn
    # once, and nothing of the withdrawn reply.
    withdrawn_id = taps.llm.turn_id(str(withdrawn[0]["user_text"]))
    assert withdrawn_id in taps.llm.retracted(), (withdrawn_id, taps.llm.requests())
    turn_id = _one_turn_asked(taps, str(turn["user_text"]))
    history = taps.llm.history()
    assert [m.role for m in history] == [llm_pb2.ROLE_USER, llm_pb2.ROLE_ASSISTANT], history
    assert history[0].content == turn["user_text"]
    assert history[1].content.strip() == taps.llm.reply(turn_id).strip() == turn["agent_text"], (
        history,
        turn,
    )
    # Nothing was heard before the end of the whole turn.
    t = turn["t_ms"]
    assert isinstance(t, dict)
    audible = session.audible()
    assert audible.size and audible[0] >= t["end_of_turn"] - FRAME_MS, (audible[:3], t)
