"""The conversation's settings: the services, endpointing and the reply, with their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

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
class ConversationSettings:
    stt: str = DEFAULT_STT
    llm: str = DEFAULT_LLM
    tts: str = DEFAULT_TTS
    vad_aggressiveness: int = DEFAULT_VAD_AGGRESSIVENESS
    # None: the turn detector's default (``silence_ms()``).
    silence_ms: int | None = None
    turn_detector: str = DEFAULT_TURN_DETECTOR
    # None: the turn detector's default (``pause_ms()``), off where silence_ms is not longer; 0: off.
    pause_ms: int | None = None
    # With "bounded": the silence that ends a turn whose words are plainly unfinished.
    max_silence_ms: int = DEFAULT_FALLBACK_SILENCE_MS
    min_speech_ms: int = DEFAULT_MIN_SPEECH_MS
    pre_roll_ms: int = DEFAULT_PRE_ROLL_MS
    barge_in_ms: int = DEFAULT_BARGE_IN_MS
    resume_ms: int = DEFAULT_RESUME_MS
    # Words over a reply that do not stop it and are no turn ("mm-hmm", "yeah"); empty: none.
    backchannels: tuple[str, ...] = DEFAULT_BACKCHANNELS
    # "full": the user's audio stays live while the agent speaks (barge-in; the front end takes
    # the agent's own voice out). "half": while the agent speaks the user's audio is muted.
    duplex: str = "full"
    voice: str = ""
    system_prompt: str = ""
    # 0: the service's default.
    max_tokens: int = 0
    security: Security = field(default_factory=Security)

    def __post_init__(self) -> None:
        if self.silence_ms is not None and self.silence_ms <= 0:
            raise ValueError("--silence-ms must be more than 0; leave it out for the turn detector's default")
        if self.pause_ms is not None and self.pause_ms < 0:
            raise ValueError("--pause-ms must be 0 (off) or more")
        if self.pause_ms and self.turn_detector == "smart":
            # The held reply ends the STT utterance at the pause, before the model has judged it.
            raise ValueError(
                "--pause-ms works with --turn-detector silence or bounded; leave out one of them"
            )
        silence = self.end_silence_ms
        if self.turn_detector == "bounded" and self.pause_ms == 0:
            raise ValueError("--turn-detector bounded judges your turn at a pause: give --pause-ms above 0")
        if self.turn_detector == "bounded" and self.max_silence_ms < silence:
            raise ValueError(
                f"--max-silence-ms ({self.max_silence_ms}) must be at least --silence-ms ({silence})"
            )
        if self.pause_ms and self.pause_ms >= silence:
            raise ValueError(
                f"--pause-ms ({self.pause_ms}) must be shorter than --silence-ms ({silence}): the reply "
                "is prepared at the pause and played when the silence ends the turn (0: no pause)"
            )

    @property
    def end_silence_ms(self) -> int:
        """The silence that ends a turn: ``silence_ms``, or the turn detector's default."""
        return silence_ms(self.turn_detector) if self.silence_ms is None else self.silence_ms


def silence_ms(turn_detector: str) -> int:
    """The default silence that ends a turn with ``turn_detector``."""
    return DEFAULT_FALLBACK_SILENCE_MS if turn_detector == "smart" else DEFAULT_SILENCE_MS


def pause_ms(turn_detector: str) -> int:
    """The default pause that prepares a held reply with ``turn_detector`` (0: none)."""
    return 0 if turn_detector == "smart" else DEFAULT_PAUSE_MS
