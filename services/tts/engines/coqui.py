"""Coqui TTS models (the optional ``coqui-tts`` package): by model name or from a local directory."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from TTS.api import TTS

from services.common.errors import ConfigError
from services.tts.config import TtsSettings
from services.tts.engine import Samples, VoiceInfo, VoiceRequest

log = logging.getLogger(__name__)

DEFAULT_MODEL = "tts_models/en/ljspeech/tacotron2-DDC"
_MAX_SAMPLE = 32767.0
_CHECKPOINT_NAMES = ("model.pth", "best_model.pth", "model_file.pth", "checkpoint.pth")


def _checkpoint(directory: Path) -> Path:
    for name in _CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    found = sorted(directory.glob("*.pth"))
    if not found:
        raise ConfigError(f"Coqui model directory {directory} has a config.json but no .pth checkpoint")
    return found[-1]


def _language(model: str) -> str:
    # Model names read tts_models/<language>/<dataset>/<architecture>.
    parts = model.split("/")
    return parts[1] if len(parts) == 4 and parts[0] == "tts_models" else "und"


class CoquiEngine:
    """One Coqui model; its synthesizer keeps state between calls, so calls take turns."""

    def __init__(self, settings: TtsSettings) -> None:
        self._model = settings.voice.strip() or DEFAULT_MODEL
        self._use_cuda = settings.use_cuda
        self._lock = threading.Lock()
        self._tts: Any = None
        self._info: VoiceInfo | None = None

    def load(self) -> None:
        directory = Path(self._model).expanduser()
        try:
            if (directory / "config.json").is_file():
                tts = TTS(
                    model_path=str(_checkpoint(directory)),
                    config_path=str(directory / "config.json"),
                    progress_bar=False,
                    gpu=self._use_cuda,
                )
                name, language = directory.name, "und"
            else:
                tts = TTS(model_name=self._model, progress_bar=False, gpu=self._use_cuda)
                name, language = self._model, _language(self._model)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"cannot load the Coqui model {self._model!r}: it is not a local model directory "
                f"(config.json and a .pth checkpoint) and loading it by name failed ({exc}); "
                "set TTS_VOICE to a model directory, or to a model name where its download is reachable"
            ) from exc
        self._tts = tts
        speakers = tuple(tts.speakers or ()) if tts.is_multi_speaker else ()
        model = tts.synthesizer.tts_model
        self._info = VoiceInfo(
            name=name,
            engine="coqui",
            language_codes=(language,),
            native_sample_rate_hz=int(tts.synthesizer.output_sample_rate),
            speakers=speakers,
            adjustable_rate=hasattr(model, "length_scale"),
        )
        self._synthesize("Ready.", VoiceRequest(voice=name))
        log.info("voice loaded", extra={"voice": name, "sample_rate_hz": self._info.native_sample_rate_hz})

    def voices(self) -> list[VoiceInfo]:
        return [self._info] if self._info is not None else []

    def synthesize(self, text: str, request: VoiceRequest) -> Samples:
        return self._synthesize(text, request)

    def _synthesize(self, text: str, request: VoiceRequest) -> Samples:
        assert self._info is not None, "load() first"
        speaker = request.speaker or (self._info.speakers[0] if self._info.speakers else None)
        with self._lock:
            model = self._tts.synthesizer.tts_model
            # VITS and Glow-TTS stretch durations by length_scale, read at each inference.
            default_scale = getattr(model, "length_scale", None)
            if default_scale is not None:
                model.length_scale = default_scale / request.speaking_rate
            try:
                wav = self._tts.tts(text=text, speaker=speaker, split_sentences=False)
            finally:
                if default_scale is not None:
                    model.length_scale = default_scale
        # The synthesizer pads every sentence with exact zeros; pieces are joined by the caller.
        audio = np.trim_zeros(np.asarray(wav, dtype=np.float32), "b")
        samples: Samples = np.clip(audio * _MAX_SAMPLE, -_MAX_SAMPLE, _MAX_SAMPLE).astype(np.int16)
        return samples
