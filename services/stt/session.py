"""One recognition stream: utterance buffering, speculative decoding, turn decisions, finals.

Audio arrives at 16 kHz. A Silero detector marks speech; decoding runs in the
shared worker pool while the user still speaks (interims) and as soon as the
detector is sure a pause follows speech. Every decode runs at full quality, so
when the end of the utterance is declared and no speech came after the last
decode, that decode is the final and returns at once. On request, each pause
is also judged by the turn detector: has the speaker finished?
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import numpy as np

from services.common.errors import VoiceError
from services.common.metrics import STAGE_LATENCY
from services.stt.config import MAX_UTTERANCE_S, SttSettings
from services.stt.engine import SAMPLE_RATE_HZ, SttEngine, Transcript, Word
from services.stt.turn import TurnDetector
from services.stt.vad import WINDOW_SAMPLES, SpeechDetector

log = logging.getLogger(__name__)

# Speech needs this many voiced windows in a row (~100 ms) to start an utterance: a click
# or a one-window blip before it neither starts nor anchors one...
_MIN_SPEECH_WINDOWS = 3
# ...and this much voiced audio in all to be worth decoding (coughs and clicks are not).
_MIN_SPEECH_S = 0.2
# Audio kept before speech starts, so the first syllable is whole.
_PRE_ROLL_S = 0.3
_PRE_ROLL = int(_PRE_ROLL_S * SAMPLE_RATE_HZ)
# Silero misses some voices: a shouted "No!", an acted "Hello?" (max speech probability 0.03 to 0.5
# in tests/data/shouts). Until it hears speech, this much audio is kept, and an end of utterance
# over it (the client's detector heard voice) is decoded when it is audible...
_UNHEARD_KEEP_S = 4.0
_UNHEARD_KEEP = int(_UNHEARD_KEEP_S * SAMPLE_RATE_HZ)
_AUDIBLE_DBFS = -45.0
# ...and its words are kept only on the model's own evidence: its mean token log-probability
# less its probability of no speech. Decoded this way (tests/data/shouts), shouted and acted
# words scored -0.2 to -1.35 (an acted "Hello?" -1.09 to -1.35 as 0.1 s of audio more or less
# went with it), real coughs given words ("Cup!", "Help! Help!", "Thank you.", "Oh my god.")
# -1.66 to -2.24, laughter aside; Whisper's own rule (no speech > 0.6 and log-probability < -1)
# is a corner of that plane.
_MIN_EVIDENCE = -1.5
# Laughter is no words, however sure the model is: one cough came back as "Ha ha ha ha ha!" at -1.07.
_LAUGHTER = frozenset({"ha", "haha", "hah", "heh", "hehe", "hee"})
_MAX_COMPRESSION_RATIO = 2.4
# The detector may take a short word for speech only at its end (a "Yes, sir!" of 0.58 s at 0.5 s):
# the audible sound just before where it did, this much at most, is the start of that speech.
_ONSET_MAX_S = 1.0
_ONSET_MAX = int(_ONSET_MAX_S * SAMPLE_RATE_HZ) // WINDOW_SAMPLES * WINDOW_SAMPLES
# Audio is judged and acted on in slices of at most ~1 s: a burst (a replay after a
# reconnect) takes turns with the other streams, and the utterance cap applies inside it.
_SLICE_SAMPLES = 32 * WINDOW_SAMPLES


class DecodeFailed(VoiceError):
    """The speech model failed on a final decode; the stream ends with this status."""


@dataclass(frozen=True)
class StreamConfig:
    language: str | None
    interim_results: bool
    word_timestamps: bool
    endpointing: bool
    endpoint_silence_ms: int
    turn_detection: bool = False
    turn_silence_ms: int = 0
    end_of_turn_threshold: float = 0.5
    pause_interims: bool = False


@dataclass(frozen=True)
class Result:
    transcript: Transcript  # offsets from the first sample of the stream
    is_final: bool
    stability: float
    utterance_index: int


class SpeechEventType(enum.Enum):
    STARTED = enum.auto()
    ENDED = enum.auto()  # the service's endpointer ended the utterance
    END_OF_TURN = enum.auto()  # the turn detector judged a pause the end of the turn
    TURN_INCOMPLETE = enum.auto()  # ... or a pause inside the turn


@dataclass(frozen=True)
class SpeechEvent:
    type: SpeechEventType
    offset_s: float
    utterance_index: int
    end_of_turn_probability: float = 0.0


@dataclass
class _Decode:
    task: asyncio.Future[Transcript]
    until: int  # stream sample index the decoded audio reaches


@dataclass
class _Utterance:
    index: int
    start: int  # stream sample index of chunks[0]
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    voiced_windows: int = 0  # counted from where speech started
    run: int = 0  # consecutive voiced windows
    speech_start: int | None = None  # stream sample index where speech started
    last_voiced: int = 0  # stream sample index where the last voiced window ends
    best: tuple[int, Transcript] | None = None  # latest decode: (until, transcript)
    last_interim: str = ""
    interim_started_at: float = 0.0
    turn_judged_at: int = -1  # last_voiced of the pause the turn detector last judged
    opened: int = field(init=False)  # stream sample index where the utterance began (before trims)

    def __post_init__(self) -> None:
        self.opened = self.start

    @property
    def started(self) -> bool:
        return self.speech_start is not None

    @property
    def has_speech(self) -> bool:
        return self.started and self.voiced_windows * WINDOW_SAMPLES >= _MIN_SPEECH_S * SAMPLE_RATE_HZ

    def trim(self, before: int) -> None:
        """Drop the audio before stream sample index ``before``."""
        excess = before - self.start
        while excess > 0 and self.chunks:
            first = self.chunks[0]
            cut = min(excess, len(first))
            if cut == len(first):
                self.chunks.pop(0)
            else:
                self.chunks[0] = first[cut:]
            self.start += cut
            self.samples -= cut
            excess -= cut


class RecognizeSession:
    def __init__(
        self,
        engine: SttEngine,
        executor: Executor,
        settings: SttSettings,
        config: StreamConfig,
        emit: Callable[[Result | SpeechEvent], None],
        *,
        listen: Executor | None = None,
        turn: TurnDetector | None = None,
    ) -> None:
        self._engine = engine
        self._executor = executor
        # Voice detection and turn decisions: a pool of their own, never queued behind decodes.
        self._listen = listen
        self._turn = turn
        self._settings = settings
        self._config = config
        self._emit = emit
        self._detector = SpeechDetector(settings.vad_threshold)
        self._total = 0  # samples received in the stream
        self._windows = 0  # VAD windows judged so far
        self._utt = _Utterance(index=0, start=0)
        self._decodes: list[_Decode] = []  # in flight, for the current utterance
        self._judging = False  # a turn decision is in flight

    @property
    def duration_s(self) -> float:
        return self._total / SAMPLE_RATE_HZ

    async def add_audio(self, audio: np.ndarray) -> None:
        for start in range(0, len(audio), _SLICE_SAMPLES):
            await self._add_slice(audio[start : start + _SLICE_SAMPLES])

    async def _add_slice(self, audio: np.ndarray) -> None:
        utt = self._utt
        utt.chunks.append(audio)
        utt.samples += len(audio)
        self._total += len(audio)
        # Silero costs ~0.1 ms a window: a long burst judged on the event loop would stall every stream.
        flags = await asyncio.get_running_loop().run_in_executor(self._listen, self._detector.push, audio)
        for voiced in flags:
            self._windows += 1
            self._on_window(voiced, self._windows * WINDOW_SAMPLES)
        if not utt.started:
            # Until speech starts, only the last few seconds (and the voiced run under way) are kept.
            utt.trim(min((self._windows - utt.run) * WINDOW_SAMPLES - _PRE_ROLL, self._total - _UNHEARD_KEEP))
        if utt.samples / SAMPLE_RATE_HZ >= MAX_UTTERANCE_S:
            await self.finalize()
        elif self._config.endpointing and self._silence_ms() >= self._config.endpoint_silence_ms:
            self._emit(SpeechEvent(SpeechEventType.ENDED, utt.last_voiced / SAMPLE_RATE_HZ, utt.index))
            await self.finalize()
        else:
            self._maybe_judge_turn()
            self._maybe_decode()

    def _on_window(self, voiced: bool, end: int) -> None:
        utt = self._utt
        if not voiced:
            utt.run = 0
            return
        utt.run += 1
        utt.last_voiced = end
        if utt.started:
            utt.voiced_windows += 1
        elif utt.run >= _MIN_SPEECH_WINDOWS:
            utt.speech_start = _onset(utt, end - utt.run * WINDOW_SAMPLES)
            utt.voiced_windows = utt.run
            utt.trim(utt.speech_start - _PRE_ROLL)
            utt.interim_started_at = time.monotonic()
            self._emit(SpeechEvent(SpeechEventType.STARTED, utt.speech_start / SAMPLE_RATE_HZ, utt.index))

    def _silence_ms(self) -> float:
        """Silence the detector has judged since the last speech (0 before speech)."""
        if not self._utt.has_speech:
            return 0.0
        return (self._windows * WINDOW_SAMPLES - self._utt.last_voiced) * 1000 / SAMPLE_RATE_HZ

    def _maybe_decode(self) -> None:
        utt = self._utt
        if not utt.has_speech:
            return
        covered = (utt.best is not None and utt.best[0] >= utt.last_voiced) or any(
            d.until >= utt.last_voiced for d in self._decodes
        )
        if not covered and self._silence_ms() >= self._settings.speculate_silence_ms:
            # A pause: this decode covers all the speech so far and supersedes the others.
            for decode in self._decodes:
                decode.task.cancel()  # stops one still queued; one running finishes as an interim
            self._decodes.append(self._start_decode(utt))
        elif (
            not self._decodes
            and self._config.interim_results
            and time.monotonic() - utt.interim_started_at >= self._settings.interim_interval_ms / 1000
        ):
            utt.interim_started_at = time.monotonic()
            self._decodes.append(self._start_decode(utt))

    def _start_decode(self, utt: _Utterance) -> _Decode:
        assert utt.speech_start is not None
        begin = max(utt.start, utt.speech_start - _PRE_ROLL)
        audio = np.concatenate(utt.chunks)[begin - utt.start :]
        beam = self._settings.beam_size
        config = self._config
        offset_s = begin / SAMPLE_RATE_HZ
        # Whisper puts the first word at the start of what it is given, pre-roll included.
        floor_s = (utt.speech_start - WINDOW_SAMPLES) / SAMPLE_RATE_HZ

        def work() -> Transcript:
            started = time.perf_counter()
            text = self._engine.transcribe(audio, config.language, config.word_timestamps, beam)
            STAGE_LATENCY.labels("stt", "decode").observe(time.perf_counter() - started)
            return _shift(text, offset_s, floor_s)

        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(loop.run_in_executor(self._executor, work))
        decode = _Decode(task, utt.start + utt.samples)
        task.add_done_callback(lambda _: self._on_decoded(decode, utt, len(audio)))
        return decode

    def _on_decoded(self, decode: _Decode, utt: _Utterance, samples: int) -> None:
        if decode in self._decodes:
            self._decodes.remove(decode)
        if decode.task.cancelled():
            return
        if (exc := decode.task.exception()) is not None:
            log.error(
                "decode of %.1f s of audio failed (utterance %d): %s: %s",
                samples / SAMPLE_RATE_HZ,
                utt.index,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            return
        if utt is not self._utt:
            return
        transcript = decode.task.result()
        if utt.best is None or decode.until > utt.best[0]:
            utt.best = (decode.until, transcript)
        interims = self._config.interim_results or self._config.pause_interims
        if interims and transcript.text and transcript.text != utt.last_interim:
            stability = _stability(utt.last_interim, transcript.text)
            utt.last_interim = transcript.text
            self._emit(Result(transcript, is_final=False, stability=stability, utterance_index=utt.index))
        self._maybe_decode()

    def _maybe_judge_turn(self) -> None:
        utt, config = self._utt, self._config
        if not config.turn_detection or self._turn is None or self._judging or not utt.has_speech:
            return
        if utt.turn_judged_at == utt.last_voiced or self._silence_ms() < config.turn_silence_ms:
            return
        # Once per pause: the pause is named by where the speech before it ended.
        utt.turn_judged_at = pause = utt.last_voiced
        # The model hears the speech and exactly the silence the detector has judged.
        audio = np.concatenate(utt.chunks)[: self._windows * WINDOW_SAMPLES - utt.start]
        self._judging = True
        turn = self._turn

        def work() -> float:
            started = time.perf_counter()
            probability = turn.probability(audio)
            STAGE_LATENCY.labels("stt", "turn").observe(time.perf_counter() - started)
            return probability

        task = asyncio.get_running_loop().run_in_executor(self._listen, work)
        task.add_done_callback(lambda _: self._on_judged(task, utt, pause))

    def _on_judged(self, task: asyncio.Future[float], utt: _Utterance, pause: int) -> None:
        self._judging = False
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("turn detection failed (utterance %d): %s", utt.index, exc, exc_info=exc)
            return
        # Speech came back or the utterance ended while the model ran: the decision is stale.
        if utt is self._utt and utt.last_voiced == pause:
            probability = task.result()
            kind = (
                SpeechEventType.END_OF_TURN
                if probability >= self._config.end_of_turn_threshold
                else SpeechEventType.TURN_INCOMPLETE
            )
            self._emit(SpeechEvent(kind, pause / SAMPLE_RATE_HZ, utt.index, probability))
        self._maybe_judge_turn()

    async def finalize(self, answer: bool = False) -> None:
        """End the current utterance: emit its final (if it held words) and start the next.

        ``answer``: the client asked (end of utterance) and waits, so a final comes whatever
        was heard: an empty one over the utterance's audio when it held no words.
        """
        utt = self._utt
        self._utt = _Utterance(index=utt.index + int(utt.has_speech or answer), start=self._total)
        in_flight, self._decodes = self._decodes, []
        if not utt.has_speech:
            if answer:
                heard = await self._unheard(utt)
                self._emit(Result(heard, is_final=True, stability=1.0, utterance_index=utt.index))
            return
        started = time.perf_counter()
        # A decode that covers all the speech may already be the final; the others are superseded.
        covering = [d for d in in_flight if d.until >= utt.last_voiced]
        for decode in in_flight:
            if decode not in covering:
                decode.task.cancel()
        if covering and (utt.best is None or utt.best[0] < utt.last_voiced):
            with contextlib.suppress(Exception):  # logged as it failed; decoded afresh below
                utt.best = (covering[-1].until, await covering[-1].task)
        try:
            if utt.best is None or utt.best[0] < utt.last_voiced:
                utt.best = (utt.last_voiced, await self._start_decode(utt).task)
        except Exception as exc:
            raise DecodeFailed(
                f"transcribing utterance {utt.index} failed ({type(exc).__name__}); see the service log"
            ) from exc
        STAGE_LATENCY.labels("stt", "finalize").observe(time.perf_counter() - started)
        heard = utt.best[1]
        if not heard.text and answer:
            # Speech to the voice detector, none to the model (a cough, a breath): still answered.
            assert utt.speech_start is not None
            heard = replace(
                heard, start_s=utt.speech_start / SAMPLE_RATE_HZ, end_s=utt.last_voiced / SAMPLE_RATE_HZ
            )
        if heard.text or answer:
            self._emit(Result(heard, is_final=True, stability=1.0, utterance_index=utt.index))

    async def _unheard(self, utt: _Utterance) -> Transcript:
        """The words of an utterance the voice detector did not take for speech, if the model
        finds any with confidence; else an empty transcript over the utterance's audio."""
        nothing = Transcript(
            "", self._config.language or "", utt.opened / SAMPLE_RATE_HZ, self._total / SAMPLE_RATE_HZ
        )
        audio = np.concatenate(utt.chunks) if utt.chunks else np.zeros(0, np.float32)
        audible = np.flatnonzero(_audible(audio[: len(audio) // WINDOW_SAMPLES * WINDOW_SAMPLES]))
        if len(audible) * WINDOW_SAMPLES < _MIN_SPEECH_S * SAMPLE_RATE_HZ:
            return nothing
        utt.speech_start = utt.start + int(audible[0]) * WINDOW_SAMPLES
        utt.last_voiced = utt.start + (int(audible[-1]) + 1) * WINDOW_SAMPLES
        try:
            heard = await self._start_decode(utt).task
        except Exception as exc:
            raise DecodeFailed(
                f"transcribing utterance {utt.index} failed ({type(exc).__name__}); see the service log"
            ) from exc
        if not _confident(heard):
            log.info(
                "no words in utterance %d: %r (no speech %.2f, log-probability %.2f, compression %.2f)",
                utt.index, heard.text, heard.no_speech_prob, heard.avg_logprob, heard.compression_ratio,
            )  # fmt: skip
            return nothing
        return heard

    async def close(self) -> None:
        """Finalise what is pending and wait for in-flight decodes."""
        await self.finalize()


def _audible(audio: np.ndarray) -> np.ndarray:
    """Per window of ``audio`` (a whole number of windows): is it louder than near silence?"""
    power = np.mean(np.square(audio.reshape(-1, WINDOW_SAMPLES), dtype=np.float64), axis=1)
    return np.asarray(power >= 10 ** (_AUDIBLE_DBFS / 10))


def _onset(utt: _Utterance, at: int) -> int:
    """Where the speech the detector found at stream sample index ``at`` began: after the last
    near-silent window of the ``_ONSET_MAX`` before it; ``at`` where there is none (a background
    that never falls quiet has no onset to find)."""
    before = min(at - utt.start, _ONSET_MAX) // WINDOW_SAMPLES * WINDOW_SAMPLES
    if before <= 0:
        return at
    end = at - utt.start
    quiet = np.flatnonzero(~_audible(np.concatenate(utt.chunks)[end - before : end]))
    return at - (before // WINDOW_SAMPLES - int(quiet[-1]) - 1) * WINDOW_SAMPLES if len(quiet) else at


def _confident(heard: Transcript) -> bool:
    """The model's own evidence says these are words, not a sound it made words of."""
    said = set(re.findall(r"[^\W_]+", heard.text.lower()))
    return (
        bool(said - _LAUGHTER)
        and heard.avg_logprob - heard.no_speech_prob >= _MIN_EVIDENCE
        and heard.compression_ratio <= _MAX_COMPRESSION_RATIO
    )


def _shift(transcript: Transcript, offset_s: float, floor_s: float) -> Transcript:
    """Times from the start of the stream; no start before ``floor_s``, where speech began."""

    def start(s: float, end: float) -> float:
        return min(max(s + offset_s, floor_s), end + offset_s)

    return replace(
        transcript,
        start_s=start(transcript.start_s, transcript.end_s),
        end_s=transcript.end_s + offset_s,
        words=[
            Word(w.word, start(w.start_s, w.end_s), w.end_s + offset_s, w.probability)
            for w in transcript.words
        ],
    )


def _stability(previous: str, current: str) -> float:
    """Share of the current interim's words that the previous interim already had, in order."""
    old, new = previous.split(), current.split()
    same = 0
    for a, b in zip(old, new, strict=False):
        if a != b:
            break
        same += 1
    return same / len(new) if new else 0.0
