"""Choosing a TTS backend and checking a request's voice settings; no model is loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.speech import REPO
from services.common.errors import ConfigError, InvalidArgument
from services.tts.config import TtsSettings
from services.tts.engine import VoiceInfo, create_engine
from services.tts.session import resolve_options

VOICES = [
    VoiceInfo("alpha", "piper", ("en-US",), 22050),
    VoiceInfo("beta", "piper", ("en-GB",), 16000, speakers=("p1", "p2")),
    VoiceInfo("gamma", "coqui", ("en",), 22050, adjustable_rate=False),
]


def test_defaults_come_from_the_first_voice() -> None:
    options = resolve_options(VOICES, "", 0, 0.0, "")
    assert (options.voice.voice, options.voice.speaking_rate, options.voice.speaker) == ("alpha", 1.0, "")
    assert options.sample_rate_hz == options.native_sample_rate_hz == 22050


def test_named_voice_rate_and_speaker() -> None:
    options = resolve_options(VOICES, "beta", 24000, 1.5, "p2")
    assert (options.voice.voice, options.voice.speaking_rate, options.voice.speaker) == ("beta", 1.5, "p2")
    assert (options.native_sample_rate_hz, options.sample_rate_hz) == (16000, 24000)


@pytest.mark.parametrize(
    ("voice", "rate_hz", "speaking_rate", "speaker", "named"),
    [
        ("delta", 0, 0.0, "", "alpha, beta, gamma"),
        ("", 7999, 0.0, "", "8000 to 48000"),
        ("", 48001, 0.0, "", "8000 to 48000"),
        ("", 0, 0.4, "", "0.5 to 2.0"),
        ("", 0, 2.5, "", "0.5 to 2.0"),
        ("", 0, float("nan"), "", "0.5 to 2.0"),
        ("beta", 0, 0.0, "p3", "p1, p2"),
        ("alpha", 0, 0.0, "p1", "single speaker"),
        ("gamma", 0, 1.5, "", "cannot change its speaking rate"),
    ],
)
def test_bad_settings_name_the_valid_choices(
    voice: str, rate_hz: int, speaking_rate: float, speaker: str, named: str
) -> None:
    with pytest.raises(InvalidArgument, match=named):
        resolve_options(VOICES, voice, rate_hz, speaking_rate, speaker)


def test_unknown_engine_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="piper, coqui"):
        create_engine(TtsSettings(engine="festival"))


# A Python without the coqui extra: its packages cannot be imported (None in sys.modules
# makes an import fail as a missing module does), whatever this environment has installed.
_WITHOUT_COQUI = """
import sys
sys.modules["torch"] = sys.modules["TTS"] = None
from services.tts.config import TtsSettings
from services.tts.engine import create_engine
create_engine(TtsSettings(engine="coqui"))
"""


def test_missing_coqui_extra_names_the_install_command() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_COQUI], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("services.common.errors.ConfigError: the coqui engine cannot be imported"), last
    assert last.endswith("install it with: pip install 'voice-agent[coqui]'"), last


def test_piper_voice_that_is_not_a_file_fails_at_load() -> None:
    engine = create_engine(TtsSettings(voice="/nowhere/voice.onnx"))
    with pytest.raises(ConfigError, match=r"\.onnx\.json"):
        engine.load()
