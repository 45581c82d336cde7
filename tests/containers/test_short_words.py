"""Short, shouted and acted words over a playing reply, against the composed services: a "No!"
the STT service's voice detector scores low still stops the reply, a short acknowledgement lets
it go on with its words, and a real cough still only pauses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conversation.backchannel import DEFAULT_BACKCHANNELS, Backchannels
from harness.speech import Recording, normalize, shouts
from tests.containers.test_edge_e2e import _over_the_reply, _played_whole_across_a_pause
from tests.noise import recorded

# Voices the Silero detector scores under its 0.5 threshold (max 0.11 to 0.65): once dropped as no speech.
QUIET_TO_SILERO = ("default_nooo", "singer_hello", "surfer_whatthe")


@pytest.mark.parametrize(
    "rec", [r for r in shouts("interruption") if r.id in QUIET_TO_SILERO], ids=lambda r: r.id
)
async def test_a_shouted_word_stops_the_reply(stack: None, tmp_path: Path, rec: Recording) -> None:
    """ "No!", "Hello!", "Wait, what?" over the reply: it stops, and the words are the next turn."""
    session, taps, _ = await _over_the_reply(tmp_path, rec.pcm())
    finals = [r.transcript for r in taps.stt.results() if r.is_final]
    assert [t["interrupted"] for t in session.turns] == [True, False], (session.turns, finals)
    t = session.turns[0]["t_ms"]
    assert isinstance(t, dict) and "resumed" not in t and "backchannels" not in session.turns[0], t
    said = normalize(str(session.turns[1]["user_text"])).split()
    assert said and set(said) == set(normalize(rec.text).split()), session.turns
    # The words came from the STT service (the tap), as its final.
    assert any(normalize(f).split() == said for f in finals), finals


@pytest.mark.parametrize(
    # The second, over a reply, Silero once took for speech only at its end: decoded from there it was
    # no words ("Awesome!", turned down on the model's evidence), or "Stop!".
    "rec",
    [r for r in shouts("backchannel") if r.id in ("classic_yessir", "default_yessir")],
    ids=lambda r: r.id,
)
async def test_a_short_acknowledgement_lets_the_reply_go_on_with_its_words(
    stack: None, tmp_path: Path, rec: Recording
) -> None:
    """ "Yes, sir!" (once dropped as no speech): the reply goes on because the words were heard."""
    session, taps, _ = await _over_the_reply(tmp_path, rec.pcm())
    _played_whole_across_a_pause(session, taps)
    said = session.turns[0].get("backchannels")
    assert isinstance(said, list) and len(said) == 1, session.turns[0]
    assert said[0] in Backchannels(DEFAULT_BACKCHANNELS) and normalize(said[0]) == "yes sir", said
    assert normalize(said[0]) in [normalize(r.transcript) for r in taps.stt.results() if r.is_final]


async def test_a_real_cough_pauses_the_reply_and_it_goes_on(stack: None, tmp_path: Path) -> None:
    """A cough Whisper makes "Ha ha ha ha ha!" of, decoded now: still no words, and the reply goes on."""
    session, taps, _ = await _over_the_reply(tmp_path, recorded("cough-default-es"))
    _played_whole_across_a_pause(session, taps)
    assert "backchannels" not in session.turns[0], session.turns[0]
    finals = [r.transcript for r in taps.stt.results() if r.is_final]
    assert finals[1:] and all(f == "" for f in finals[1:]), finals  # the question's, then the cough's
