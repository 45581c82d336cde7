"""STT settings, read once from ``STT_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.config import ServerSettings

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9101
DEFAULT_MODEL = "tiny.en"
# Whisper's window is 30 s; an utterance that long is finalised and a new one begun.
MAX_UTTERANCE_S = 28.0
DEFAULT_MAX_STREAM_S = 3600.0
DEFAULT_ENDPOINT_SILENCE_MS = 600
# Trailing silence after which the service decodes ahead of the end of utterance. 64 ms
# (two unvoiced windows) started the last decode ~100 ms sooner, but that decode missed
# soft word endings the detector takes for silence ("ten of clubs" heard as "ten of close"),
# and a final is never revised: 160 ms keeps them.
DEFAULT_SPECULATE_SILENCE_MS = 160
# Silence after speech at which the turn detector judges the pause (when a stream asks for it)...
DEFAULT_TURN_SILENCE_MS = 200
# ...and the probability from which the pause counts as the end of the turn.
DEFAULT_END_OF_TURN_THRESHOLD = 0.5
DEFAULT_INTERIM_INTERVAL_MS = 1000
# Whisper encodes a 30 s window whatever the audio. Encoding the audio and this much of the
# padding after it instead made a decode 2.9x cheaper (tiny.en, 2 cores, dev clips: 176 vs
# 511 ms p50) with the same words (WER 0.077 vs 0.088); with 5 s it began to repeat itself.
DEFAULT_ENCODER_PADDING_S = 10.0


class SttSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="STT_", frozen=True, extra="ignore")

    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    # "tiny.en" or "base" (shipped offline), any Whisper size name, or a model directory.
    model: str = DEFAULT_MODEL
    # "auto": CUDA where a GPU is present, else the CPU.
    device: str = "auto"
    # "auto": float16 on CUDA, int8 on the CPU.
    compute_type: str = "auto"
    # Threads per decode; 0 lets CTranslate2 choose.
    cpu_threads: int = 0
    # Decodes that run at once; streams beyond it wait their turn.
    workers: int = 1
    beam_size: int = 5
    # Padding after the audio that the encoder sees (30: the whole window, as Whisper was trained).
    encoder_padding_s: float = DEFAULT_ENCODER_PADDING_S
    # Where the multilingual base model is assembled from its packages.
    model_cache_dir: str = "~/.cache/voice-agent/models"
    max_stream_s: float = DEFAULT_MAX_STREAM_S
    speculate_silence_ms: int = DEFAULT_SPECULATE_SILENCE_MS
    interim_interval_ms: int = DEFAULT_INTERIM_INTERVAL_MS
    # Silero speech probability above which a 32 ms window counts as speech.
    vad_threshold: float = 0.5
    # The Smart Turn ONNX file; empty: the one the pipecat-ai wheel ships.
    turn_model: str = ""
    # Threads for one turn decision (one measured faster than two on 2 cores).
    turn_threads: int = 1
