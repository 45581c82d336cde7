"""The ``Engine`` protocol every TTS backend implements, and ``create_engine``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.common.errors import ConfigError
from services.tts.config import TtsSettings

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True)
class VoiceInfo:
    """A loaded voice as ListVoices reports it."""

    name: str
    engine: str
    language_codes: tuple[str, ...]
    native_sample_rate_hz: int
    # Empty for single-speaker voices; the first is the default.
    speakers: tuple[str, ...] = ()
    # False when the model has no way to speak faster or slower.
    adjustable_rate: bool = True


@dataclass(frozen=True)
class VoiceRequest:
    """What one synthesis asks of the engine; already checked against ``VoiceInfo``."""

    voice: str
    # 1.0 is normal speed, 2.0 twice as fast.
    speaking_rate: float = 1.0
    # Empty for the voice's default speaker.
    speaker: str = ""


class Engine(Protocol):
    """Loaded voices shared by every stream; ``synthesize`` blocks and runs in worker threads."""

    def load(self) -> None:
        """Load and warm every voice; called once before serving."""

    def voices(self) -> list[VoiceInfo]:
        """The loaded voices, the default first."""

    def synthesize(self, text: str, request: VoiceRequest) -> Samples:
        """Mono LINEAR16 samples of ``text`` at the voice's native rate; safe to call from several threads."""


# name -> (module, class, what to install when its import fails)
_BACKENDS = {
    "piper": ("services.tts.engines.piper", "PiperEngine", "pip install 'voice-agent[tts]'"),
    "coqui": ("services.tts.engines.coqui", "CoquiEngine", "pip install 'voice-agent[coqui]'"),
}


def create_engine(settings: TtsSettings) -> Engine:
    """The backend named by ``settings.engine``, imported only now."""
    if settings.engine not in _BACKENDS:
        raise ConfigError(f"unknown TTS_ENGINE {settings.engine!r}; choose one of: {', '.join(_BACKENDS)}")
    module_name, class_name, install = _BACKENDS[settings.engine]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {settings.engine} engine cannot be imported ({exc}); install it with: {install}"
        ) from exc
    engine: Engine = getattr(module, class_name)(settings)
    return engine
