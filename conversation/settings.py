"""The conversation's settings: the services, endpointing and the reply, with their defaults.

Each field people set carries its one definition (``setting``): the edge client's flag with its
help and environment variable, and the Realtime session's field; the CLI and the Realtime door are
made from these, and a refusal (``SettingError``) is written in whichever names the caller used."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from string import Formatter
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conversation.backchannel import DEFAULT_BACKCHANNELS
from foundation.channels import Security

DEFAULT_STT = "127.0.0.1:50051"
DEFAULT_LLM = "127.0.0.1:50052"
DEFAULT_TTS = "127.0.0.1:50053"
# Silence that ends the user's turn. The services decode during it, so a shorter
# wait cuts latency but splits slow speakers' sentences; see bench/e2e.
DEFAULT_SILENCE_MS = 600
# How the end of the user's turn is decided. "smart": at each short pause the STT
# service's end-of-turn model (Smart Turn) judges the audio; a complete turn ends at
# once, an incomplete one waits for more speech or, at the latest, the fallback silence.
# "silence": the turn ends after silence_ms of silence.
# Silence is the default: on the dev clips here the model judged read sentences unfinished
# as often as finished, so it waited the fallback and was slower (see bench/e2e).
# "bounded": at each short pause the words decoded so far and (where the service has it) the
# model judge the turn: done -> it ends at once; unsure -> after silence_ms; plainly unfinished
# ("my number is") -> after max_silence_ms. The reply is prepared at the pause, held until then.
TURN_DETECTORS = ("smart", "silence", "bounded")
DEFAULT_TURN_DETECTOR = "silence"
# The silence that ends a turn the model judged incomplete (with "smart"), and one whose words
# are plainly unfinished (with "bounded").
DEFAULT_FALLBACK_SILENCE_MS = 1600
# With "silence", a pause this long finalises the utterance and starts a reply, held
# until the silence reaches silence_ms (and withdrawn if the user goes on). On 2 cores
# it took the dev and short clips' p50 from 1060 to 825 ms (bench/e2e's unheld and
# silence rows); a pause inside a sentence costs a withdrawn reply's work. Not with
# "smart": the end of utterance at the pause would come before the model judged the turn.
DEFAULT_PAUSE_MS = 200
DEFAULT_VAD_AGGRESSIVENESS = 2
# Voiced audio that starts an utterance: webrtcvad holds a click voiced for 4 frames (120 ms).
DEFAULT_MIN_SPEECH_MS = 150
DEFAULT_PRE_ROLL_MS = 300
# Voiced sound while the agent talks, this much within twice this time, pauses the reply
# (silence between does not count, so a cough's quiet tail adds nothing)...
DEFAULT_BARGE_IN_MS = 300
# ...and once the user has been quiet this long with no words transcribed, the reply goes
# on where it stopped. It is longer than the silence that ends a turn plus a final's decode.
DEFAULT_RESUME_MS = 1200
# Microphone audio kept while the STT service is unreachable.
MAX_BUFFERED_AUDIO_S = 120.0


@dataclass(frozen=True)
class Setting:
    """How people set one conversation setting: the edge client's flag (its default from ``env``
    where there is one) and the field of a Realtime session, where that door exposes it."""

    flag: str
    help: str = ""
    env: str = ""
    # The field's path in a Realtime ``session``, as the current API lays it out.
    api: str = ""
    # From the flag's text to the value.
    parse: Callable[[str], Any] = str
    choices: Collection[Any] | None = None


def setting(
    flag: str,
    help: str = "",
    *,
    env: str = "",
    api: str = "",
    parse: Callable[[str], Any] = str,
    choices: Collection[Any] | None = None,
) -> dict[str, Setting]:
    """A field's ``metadata``: ``field(default=600, metadata=setting("--silence-ms", "..."))``."""
    return {"setting": Setting(flag, help, env, api, parse, choices)}


def _phrases(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class ConversationSettings:
    stt: str = field(default=DEFAULT_STT, metadata=setting("--stt", "STT service address", env="STT_ADDRESS"))
    llm: str = field(default=DEFAULT_LLM, metadata=setting("--llm", "LLM service address", env="LLM_ADDRESS"))
    tts: str = field(default=DEFAULT_TTS, metadata=setting("--tts", "TTS service address", env="TTS_ADDRESS"))
    vad_aggressiveness: int = field(
        default=DEFAULT_VAD_AGGRESSIVENESS,
        metadata=setting("--vad-aggressiveness", parse=int, choices=range(4)),
    )
    # None: the turn detector's default (``silence_ms()``).
    silence_ms: int | None = field(
        default=None,
        metadata=setting(
            "--silence-ms",
            f"silence that ends your turn ({DEFAULT_SILENCE_MS}); with the smart detector, "
            f"the longest wait when it judges you not done ({DEFAULT_FALLBACK_SILENCE_MS})",
            api="audio.input.turn_detection.silence_duration_ms",
            parse=int,
        ),
    )
    turn_detector: str = field(
        default=DEFAULT_TURN_DETECTOR,
        metadata=setting(
            "--turn-detector",
            "silence: the silence ends your turn; smart: a model judges each pause (falls back to "
            "silence where the service has none); bounded: your words so far and the model judge each "
            "pause: done ends the turn at once, unsure waits --silence-ms, plainly unfinished "
            "--max-silence-ms",
            api="audio.input.turn_detection.type",
            choices=TURN_DETECTORS,
        ),
    )
    # None: the turn detector's default (``pause_ms()``), off where silence_ms is not longer; 0: off.
    pause_ms: int | None = field(
        default=None,
        metadata=setting(
            "--pause-ms",
            f"pause after which a reply is prepared, played only if the silence lasts "
            f"({DEFAULT_PAUSE_MS} with --turn-detector silence or bounded; 0: off; not with smart)",
            api="audio.input.turn_detection",  # null: off
            parse=int,
        ),
    )
    # With "bounded": the silence that ends a turn whose words are plainly unfinished.
    max_silence_ms: int = field(
        default=DEFAULT_FALLBACK_SILENCE_MS,
        metadata=setting(
            "--max-silence-ms",
            "with --turn-detector bounded: the silence that ends a turn whose words are plainly "
            f'unfinished ("my number is"; {DEFAULT_FALLBACK_SILENCE_MS})',
            parse=int,
        ),
    )
    min_speech_ms: int = DEFAULT_MIN_SPEECH_MS
    pre_roll_ms: int = DEFAULT_PRE_ROLL_MS
    barge_in_ms: int = field(
        default=DEFAULT_BARGE_IN_MS,
        metadata=setting(
            "--barge-in-ms",
            "voiced sound that pauses the agent; it stops if words are transcribed",
            parse=int,
        ),
    )
    resume_ms: int = field(
        default=DEFAULT_RESUME_MS,
        metadata=setting(
            "--resume-ms",
            "quiet after a pause with no words transcribed, after which the agent goes on",
            parse=int,
        ),
    )
    # Words over a reply that do not stop it and are no turn ("mm-hmm", "yeah"); empty: none.
    backchannels: tuple[str, ...] = field(
        default=DEFAULT_BACKCHANNELS,
        metadata=setting(
            "--backchannels",
            'what you may say over a reply without stopping it ("mm-hmm", "yeah"), comma-separated; '
            '"" for none (default: a short list in English and Russian)',
            parse=_phrases,
        ),
    )
    # "full": the user's audio stays live while the agent speaks (barge-in; the front end takes
    # the agent's own voice out). "half": while the agent speaks the user's audio is muted.
    duplex: str = field(
        default="full",
        metadata=setting(
            "--duplex",
            "full: speak to interrupt the agent; half: the mic is muted while it speaks (no echo canceller)",
            choices=("full", "half"),
        ),
    )
    voice: str = field(
        default="",
        metadata=setting("--voice", "TTS voice name (default: the service's)", api="audio.output.voice"),
    )
    system_prompt: str = field(
        default="",
        metadata=setting(
            "--system-prompt", "the assistant's instructions (default: the service's)", api="instructions"
        ),
    )
    # 0: the service's default.
    max_tokens: int = field(
        default=0,
        metadata=setting("--max-tokens", "longest reply, in tokens (default: the service's)", parse=int),
    )
    # None: the service's default (0.7).
    temperature: float | None = field(
        default=None,
        metadata=setting(
            "--temperature",
            "the chat model's sampling temperature (default: the service's); 0 answers alike each time",
            parse=float,
        ),
    )
    # Tools the agent may call (docs/tools.md): MCP servers, named in a JSON file in the
    # ``mcpServers`` shape, and the built-in date and time, off unless a time zone is given.
    mcp_config: str = field(
        default="",
        metadata=setting(
            "--mcp-config",
            'a JSON file of MCP servers whose tools the agent may call ({"mcpServers": {"name": '
            '{"command": ..., "args": [...]} or {"url": ...}}})',
        ),
    )
    time_zone: str = field(
        default="",
        metadata=setting(
            "--time-zone",
            "give the agent a tool that tells the date and time in this time zone (an IANA name, "
            "e.g. Europe/London); off by default",
        ),
    )
    security: Security = field(default_factory=Security)

    def __post_init__(self) -> None:
        if self.silence_ms is not None and self.silence_ms <= 0:
            raise SettingError(
                "{silence_ms} must be more than 0; leave it out for the turn detector's default"
            )
        if self.pause_ms is not None and self.pause_ms < 0:
            raise SettingError("{pause_ms} must be 0 (off) or more")
        if self.pause_ms and self.turn_detector == "smart":
            # The held reply ends the STT utterance at the pause, before the model has judged it.
            raise SettingError(
                "{pause_ms} works with {turn_detector} silence or bounded; leave out one of them"
            )
        if self.time_zone and not _is_time_zone(self.time_zone):
            raise SettingError(
                "{time_zone} {zone!r} is no time zone; give an IANA name such as Europe/London",
                zone=self.time_zone,
            )
        silence = self.end_silence_ms
        if self.turn_detector == "bounded" and self.pause_ms == 0:
            raise SettingError("{turn_detector} bounded judges your turn at a pause: give {pause_ms} above 0")
        if self.turn_detector == "bounded" and self.max_silence_ms < silence:
            raise SettingError(
                "{max_silence_ms} ({max_silence}) must be at least {silence_ms} ({silence})",
                max_silence=self.max_silence_ms,
                silence=silence,
            )
        if self.pause_ms and self.pause_ms >= silence:
            raise SettingError(
                "{pause_ms} ({pause}) must be shorter than {silence_ms} ({silence}): the reply is prepared "
                "at the pause and played when the silence ends the turn (0: no pause)",
                pause=self.pause_ms,
                silence=silence,
            )

    @property
    def end_silence_ms(self) -> int:
        """The silence that ends a turn: ``silence_ms``, or the turn detector's default."""
        return silence_ms(self.turn_detector) if self.silence_ms is None else self.silence_ms


def _is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def silence_ms(turn_detector: str) -> int:
    """The default silence that ends a turn with ``turn_detector``."""
    return DEFAULT_FALLBACK_SILENCE_MS if turn_detector == "smart" else DEFAULT_SILENCE_MS


def pause_ms(turn_detector: str) -> int:
    """The default pause that prepares a held reply with ``turn_detector`` (0: none)."""
    return 0 if turn_detector == "smart" else DEFAULT_PAUSE_MS


# The conversation's settings that people set, by field name.
SETTINGS: dict[str, Setting] = {
    f.name: f.metadata["setting"] for f in fields(ConversationSettings) if "setting" in f.metadata
}


def flag(name: str) -> str:
    """The edge client's flag for the setting ``name`` (the field's name where it has none)."""
    return SETTINGS[name].flag if name in SETTINGS else name


class SettingError(ValueError):
    """A refused setting. The message names each setting it is about as ``{field_name}``, and
    ``render`` writes those in a front end's vocabulary; ``str()`` gives the flags."""

    def __init__(self, message: str, **values: object) -> None:
        self.message, self.values = message, values
        # The settings it is about, by field name.
        named = (n for _, n, _, _ in Formatter().parse(message) if n and n not in values)
        self.fields = tuple(dict.fromkeys(named))
        super().__init__(self.render(flag))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with each setting called ``name(field_name)``."""
        return self.message.format(**self.values, **{f: name(f) for f in self.fields})
