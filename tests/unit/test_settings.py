"""The conversation's settings, each defined once: the CLI made from them, and refusals in each
front end's names."""

from __future__ import annotations

from dataclasses import fields

import pytest

from conversation.settings import SETTINGS, ConversationSettings, SettingError
from edge_client.config import from_args, parser


def test_every_setting_has_its_flag_with_the_fields_default() -> None:
    defaults = {f.name: f.default for f in fields(ConversationSettings)}
    flags = {option: action for action in parser()._actions for option in action.option_strings}
    args = parser().parse_args([])
    for name, setting in SETTINGS.items():
        assert flags[setting.flag].dest == name
        if not setting.env:
            assert getattr(args, name) == defaults[name], name
    settings, unset = from_args(args), ConversationSettings()
    assert all(getattr(settings, n) == getattr(unset, n) for n, s in SETTINGS.items() if not s.env)


def test_a_settings_environment_variable_is_its_flags_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_ADDRESS", "stt.example:443")
    assert from_args(parser().parse_args([])).stt == "stt.example:443"
    assert "(env STT_ADDRESS)" in parser().format_help()


def test_a_refusal_knows_its_settings_and_is_written_in_the_callers_names() -> None:
    with pytest.raises(SettingError) as refused:
        ConversationSettings(turn_detector="bounded", silence_ms=2000)
    assert refused.value.fields == ("max_silence_ms", "silence_ms")
    assert str(refused.value) == "--max-silence-ms (1600) must be at least --silence-ms (2000)"
    assert refused.value.render(str.upper) == "MAX_SILENCE_MS (1600) must be at least SILENCE_MS (2000)"


def test_the_backchannels_flag_takes_comma_separated_phrases() -> None:
    assert from_args(parser().parse_args(["--backchannels", "mm, yeah,,"])).backchannels == ("mm", "yeah")
    assert from_args(parser().parse_args(["--backchannels", ""])).backchannels == ()
