"""Whisper models come from the packages that ship them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.stt.models import base_path, resolve_model


def test_tiny_en_is_shipped() -> None:
    assert (Path(resolve_model("tiny.en", "/nonexistent")) / "model.bin").is_file()


def test_base_is_assembled_once_from_its_parts(tmp_path: Path) -> None:
    path = Path(resolve_model("base", str(tmp_path)))
    model = path / "model.bin"
    assert model.stat().st_size > 100_000_000
    assert {p.name for p in path.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.json",
    }
    mtime = model.stat().st_mtime_ns
    assert base_path(tmp_path) == str(path) and model.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("name", ["small", "large-v3", "distil-large-v3"])
def test_other_size_names_pass_through_to_the_hub(name: str) -> None:
    assert resolve_model(name, "/nonexistent") == name


def test_a_directory_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path), "/nonexistent") == str(tmp_path)
