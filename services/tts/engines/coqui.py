"""Coqui TTS models (the optional ``coqui-tts`` package): by model name or from a local directory.

A local model directory holds ``config.json`` and a ``.pth`` checkpoint; a spectrogram
model (Tacotron2) also needs a ``vocoder/`` folder of the same shape (HiFiGAN, ...).
A model given by name is downloaded by Coqui's model manager into ``$TTS_HOME/tts``
the first time and read from there afterwards.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from trainer.io import get_user_data_dir
from TTS.api import TTS

from services.common.errors import ConfigError
from services.tts.config import TtsSettings
from services.tts.engine import Samples, VoiceInfo, VoiceRequest

log = logging.getLogger(__name__)

DEFAULT_MODEL = "tts_models/en/ljspeech/tacotron2-DDC"
VOCODER_DIR = "vocoder"
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


def downloaded_path(model: str) -> Path:
    """Where Coqui's model manager keeps ``model`` once downloaded."""
    return get_user_data_dir("tts") / model.replace("/", "--")


def _device(use_cuda: bool) -> str:
    if not use_cuda:
        return "cpu"
    if not torch.cuda.is_available():
        raise ConfigError("TTS_USE_CUDA is set but torch sees no CUDA device; unset it to run on the CPU")
    return "cuda"


def _from_directory(directory: Path) -> Any:
    vocoder = directory / VOCODER_DIR
    has_vocoder = (vocoder / "config.json").is_file()
    return TTS(
        model_path=str(_checkpoint(directory)),
        config_path=str(directory / "config.json"),
        vocoder_path=str(_checkpoint(vocoder)) if has_vocoder else None,
        vocoder_config_path=str(vocoder / "config.json") if has_vocoder else None,
        progress_bar=False,
    )


def _by_name(model: str) -> Any:
    target = downloaded_path(model)
    if not target.is_dir():
        log.warning(
            "downloading the Coqui model (first run only)", extra={"model": model, "directory": str(target)}
        )
    try:
        return TTS(model_name=model, progress_bar=False)
    except Exception as exc:
        raise ConfigError(
            f"the Coqui model {model!r} is not in {target} and could not be downloaded ({exc}); "
            "run once where Coqui's model downloads are reachable (the model is kept there), "
            "or set TTS_VOICE to a local model directory (config.json and a .pth checkpoint)"
        ) from exc


class CoquiEngine:
    """One Coqui model; its synthesizer keeps state between calls, so calls take turns."""

    def __init__(self, settings: TtsSettings) -> None:
        self._model = settings.voice.strip() or DEFAULT_MODEL
        self._use_cuda = settings.use_cuda
        self._threads = settings.threads
        self._lock = threading.Lock()
        self._tts: Any = None
        self._info: VoiceInfo | None = None

    def load(self) -> None:
        device = _device(self._use_cuda)
        # Calls take turns on the model; torch's default of one thread per core only
        # fights the other services for the CPU.
        torch.set_num_threads(max(1, self._threads))
        directory = Path(self._model).expanduser()
        if (directory / "config.json").is_file():
            tts = _from_directory(directory)
            name, language = directory.name, "und"
        elif self._model.startswith("tts_models/"):
            tts = _by_name(self._model)
            name, language = self._model, _language(self._model)
        else:
            raise ConfigError(
                f"Coqui model directory {self._model!r} has no config.json; set TTS_VOICE to a model "
                f"directory or to a model name such as {DEFAULT_MODEL}"
            )
        self._tts = tts.to(device)
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
        log.info(
            "voice loaded",
            extra={"voice": name, "sample_rate_hz": self._info.native_sample_rate_hz, "device": device},
        )

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
