"""LLM settings and engine selection: defaults, secrets, lazy backends, fallback."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import pytest

from services.common.errors import ConfigError, InvalidArgument, Unavailable, VoiceError
from services.llm.config import LlmSettings
from services.llm.engine import (
    Completion,
    Engine,
    FallbackEngine,
    Finish,
    Message,
    OnDelta,
    Options,
    Session,
    create_engine,
)

ENV = (
    "LLM_ENGINE",
    "LLM_FALLBACK",
    "LLM_MODEL",
    "CEREBRAS_API_KEY",
    "CEREBRAS_BASE_URL",
    "LLM_CEREBRAS_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = LlmSettings()
    assert (settings.port, settings.metrics_port, settings.engine_name) == (50052, 9102, "local")
    monkeypatch.setenv("CEREBRAS_API_KEY", "csk-secret")
    monkeypatch.setenv("CEREBRAS_BASE_URL", "http://127.0.0.1:1")
    settings = LlmSettings()
    assert settings.engine_name == "cerebras"
    assert settings.cerebras_base_url == "http://127.0.0.1:1"
    assert "csk-secret" not in repr(settings) and "csk-secret" not in str(settings.model_dump())
    monkeypatch.setenv("LLM_ENGINE", "local")
    assert LlmSettings().engine_name == "local"


def test_the_key_is_read_without_prefix_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_CEREBRAS_API_KEY", "csk-secret")
    assert LlmSettings().engine_name == "local"


def test_cerebras_without_a_key_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="set CEREBRAS_API_KEY"):
        create_engine(LlmSettings(engine="cerebras"))


def test_unknown_engine() -> None:
    with pytest.raises(ConfigError, match="one of cerebras, openai, local"):
        create_engine(LlmSettings(engine="gpt"))


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "services.llm.engines.openai", raising=False)
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ConfigError, match=r"pip install 'voice-agent\[llm\]'"):
        create_engine(LlmSettings(engine="openai"))


def test_fallback_wraps_the_cloud_engine() -> None:
    engine = create_engine(LlmSettings(engine="openai", fallback="local"))
    assert isinstance(engine, FallbackEngine)
    assert (engine.name, engine.fallback.name) == ("openai", "local")
    assert not isinstance(create_engine(LlmSettings(engine="local", fallback="local")), FallbackEngine)


class ScriptedSession:
    """Streams ``words``, then raises ``error`` if given."""

    def __init__(self, name: str, words: list[str], error: VoiceError | None = None) -> None:
        self.name, self.words, self.error = name, words, error

    def generate(
        self, messages: Sequence[Message], options: Options, on_delta: OnDelta, cancel: threading.Event
    ) -> Completion:
        for word in self.words:
            on_delta(word)
        if self.error:
            raise self.error
        return Completion("".join(self.words), Finish.STOP, 1, len(self.words), self.name)

    def close(self) -> None:
        pass


class ScriptedEngine:
    context_tokens = 100

    def __init__(self, name: str, session: Session) -> None:
        self.name = self.model = name
        self.session = session

    def load(self) -> None:
        pass

    def open_session(self) -> Session:
        return self.session


def run(primary: Session) -> tuple[list[str], Completion]:
    cloud: Engine = ScriptedEngine("cloud", primary)
    engine = FallbackEngine(cloud, ScriptedEngine("local", ScriptedSession("local", ["hi"])))
    deltas: list[str] = []
    completion = engine.open_session().generate(
        [], Options("m", 0.7, 10), lambda d: deltas.append(str(d)), threading.Event()
    )
    return deltas, completion


def test_fallback_answers_when_the_cloud_is_unavailable() -> None:
    deltas, completion = run(ScriptedSession("cloud", [], Unavailable("down")))
    assert (deltas, completion.engine) == (["hi"], "local")
    deltas, completion = run(ScriptedSession("cloud", ["yo"]))
    assert (deltas, completion.engine) == (["yo"], "cloud")


def test_no_fallback_mid_reply_or_for_bad_requests() -> None:
    with pytest.raises(Unavailable):
        run(ScriptedSession("cloud", ["half"], Unavailable("dropped")))
    with pytest.raises(InvalidArgument):
        run(ScriptedSession("cloud", [], InvalidArgument("bad")))
