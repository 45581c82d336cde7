"""End-of-turn detection from audio with the Smart Turn v3.2 model.

The model (BSD-2-Clause, int8 ONNX) ships inside the ``pipecat-ai`` wheel, which
is installed without its dependencies: only the file is used, and pipecat itself
is never imported. It reads Whisper log-mel features of the last 8 s of the turn
and gives the probability that the speaker has finished.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import FailedPrecondition
from services.stt.engine import SAMPLE_RATE_HZ

# The model sees exactly this much audio: the end of the turn, zero-padded at the front.
WINDOW_S = 8
_WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE_HZ
_MODEL_FILE = Path("audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx")
# Waveform normalisation as Whisper's feature extractor does it (``do_normalize``).
_NORM_EPS = 1e-7
INSTALL_HINT = "pip install --no-deps pipecat-ai==1.14.0 (it ships the Smart Turn model)"


def bundled_model_path() -> Path | None:
    """The Smart Turn file inside the installed pipecat-ai wheel, found without importing pipecat."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _MODEL_FILE
    return path if path.is_file() else None


class TurnDetector:
    """One loaded Smart Turn model, shared by every stream; ``probability`` blocks (run it in a thread)."""

    def __init__(self, model_path: str = "", threads: int = 1) -> None:
        self._path = Path(model_path) if model_path else bundled_model_path()
        self._threads = threads
        self._session: Any = None
        self._features: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._path is not None and self._path.is_file()

    def load(self) -> None:
        """Load the model and its feature extractor (blocking; once)."""
        with self._lock:
            if self._session is not None:
                return
            if not self.available:
                raise FailedPrecondition(f"turn detection needs the Smart Turn model: {INSTALL_HINT}")
            import onnxruntime as ort
            from faster_whisper.feature_extractor import FeatureExtractor

            options = ort.SessionOptions()
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.inter_op_num_threads = 1
            # One thread: measured faster than two on a 2-core machine, and it leaves a core to decode.
            options.intra_op_num_threads = self._threads
            self._features = FeatureExtractor(chunk_length=WINDOW_S)
            self._session = ort.InferenceSession(
                str(self._path), sess_options=options, providers=["CPUExecutionProvider"]
            )

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(80, 800) Whisper log-mel features of the last 8 s of 16 kHz float32 ``audio``."""
        if self._features is None:
            self.load()
        window = np.zeros(_WINDOW_SAMPLES, dtype=np.float32)
        tail = audio[-_WINDOW_SAMPLES:]
        if len(tail):
            window[-len(tail) :] = tail
        window = (window - window.mean()) / np.sqrt(window.var() + _NORM_EPS)
        mel: np.ndarray = self._features(window, padding=0)
        return mel.astype(np.float32)

    def probability(self, audio: np.ndarray) -> float:
        """Probability that the turn is complete at the end of ``audio`` (16 kHz float32)."""
        features = self.features(audio)
        (out,) = self._session.run(None, {"input_features": features[np.newaxis]})
        return float(np.asarray(out).reshape(-1)[0])
