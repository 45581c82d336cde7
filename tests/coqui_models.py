"""Randomly initialised Coqui models, saved the way Coqui's model manager keeps downloaded ones.

No Coqui weights can be downloaded here; these have the classes and config shape of
the released models, so the engine loads them through the same code paths.
"""

from __future__ import annotations

from pathlib import Path

import torch
from TTS.tts.configs.shared_configs import BaseAudioConfig
from TTS.tts.configs.tacotron2_config import Tacotron2Config
from TTS.tts.configs.vits_config import VitsConfig
from TTS.tts.models.tacotron2 import Tacotron2
from TTS.tts.models.vits import Vits
from TTS.vocoder.configs.hifigan_config import HifiganConfig
from TTS.vocoder.models import setup_model as setup_vocoder

TACOTRON2_DDC = "tts_models/en/ljspeech/tacotron2-DDC"
HIFIGAN_V2 = "vocoder_models/en/ljspeech/hifigan_v2"
# Decoder steps of r=2 frames each: untrained, Tacotron2 never predicts its stop
# token, so every piece runs to this limit. HiFiGAN pads 5 frames on each side and
# makes 256 samples of each: 33,280 samples (1.5 s at 22.05 kHz) a piece.
TACOTRON2_STEPS = 60
TACOTRON2_PIECE_SAMPLES = (TACOTRON2_STEPS * 2 + 10) * 256

# LJSpeech's audio settings, shared by tacotron2-DDC and its HiFiGAN vocoder.
_LJSPEECH_AUDIO = BaseAudioConfig(
    sample_rate=22050,
    num_mels=80,
    fft_size=1024,
    win_length=1024,
    hop_length=256,
    mel_fmin=50.0,
    mel_fmax=7600.0,
    do_trim_silence=True,
    signal_norm=True,
    symmetric_norm=True,
    max_norm=4.0,
    clip_norm=True,
)


def save_tacotron2_ddc(directory: Path) -> None:
    """Tacotron2 with double decoder consistency (characters, no phonemes) into ``directory``."""
    torch.manual_seed(0)
    config = Tacotron2Config(
        audio=_LJSPEECH_AUDIO,
        use_phonemes=False,
        text_cleaner="basic_cleaners",
        r=2,
        double_decoder_consistency=True,
        ddc_r=6,
        max_decoder_steps=TACOTRON2_STEPS,
        stopnet=True,
        separate_stopnet=True,
    )
    model = Tacotron2(config)
    # A random stop token fires at any step; this one never does, so lengths are known.
    with torch.no_grad():
        model.decoder.stopnet[-1].linear_layer.bias.fill_(-10.0)
    _save(directory, model.state_dict(), config)


def save_hifigan_v2(directory: Path) -> None:
    """A HiFiGAN vocoder with hifigan_v2's generator sizes (discriminators included, as trained)."""
    torch.manual_seed(0)
    config = HifiganConfig(
        audio=_LJSPEECH_AUDIO,
        generator_model_params={
            "upsample_factors": [8, 8, 2, 2],
            "upsample_kernel_sizes": [16, 16, 4, 4],
            "upsample_initial_channel": 128,
            "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "resblock_type": "1",
        },
    )
    _save(directory, setup_vocoder(config).state_dict(), config)


def save_vits(directory: Path) -> None:
    """A single-speaker VITS model on characters into ``directory``."""
    torch.manual_seed(0)
    config = VitsConfig(use_phonemes=False, text_cleaner="basic_cleaners")
    model = Vits(config)
    _save(directory, model.state_dict(), model.config)


def downloaded_dir(tts_home: Path, model: str) -> Path:
    """The folder Coqui's model manager downloads ``model`` into under ``TTS_HOME``."""
    return tts_home / "tts" / model.replace("/", "--")


def _save(directory: Path, state: dict[str, torch.Tensor], config: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # The released checkpoints are named model_file.pth.
    torch.save({"model": state}, directory / "model_file.pth")
    config.save_json(str(directory / "config.json"))  # type: ignore[attr-defined]
