"""TTS settings, read once from ``TTS_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.config import ServerSettings

DEFAULT_PORT = 50053
DEFAULT_METRICS_PORT = 9103
DEFAULT_ENGINE = "piper"
# Synthesis runs at once across all streams; more wait their turn.
DEFAULT_WORKERS = 2
# ONNX Runtime threads per synthesis; one thread per worker was fastest on 2 cores.
DEFAULT_THREADS = 1


class TtsSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", frozen=True, extra="ignore")

    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    # "piper" or "coqui".
    engine: str = DEFAULT_ENGINE
    # piper: empty for en_US-joe-medium (shipped in a package), or paths of .onnx voices
    # separated by commas, the first being the default.
    # coqui: a model name (tts_models/en/ljspeech/tacotron2-DDC) or a local model directory.
    voice: str = ""
    workers: int = DEFAULT_WORKERS
    threads: int = DEFAULT_THREADS
    use_cuda: bool = False
