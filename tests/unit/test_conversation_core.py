"""The conversation core stands alone, and its settings refuse contradictions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import conversation
from conversation.settings import DEFAULT_SILENCE_MS, ConversationSettings

CORE = Path(conversation.__file__).parent
# A front end, a sound device, or a service's own code: the core must reach none of them.
FORBIDDEN = ("edge_client", "sounddevice", "services.stt", "services.llm", "services.tts", "services.gateway")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(f"{bad}.") for bad in FORBIDDEN)


def test_the_core_imports_no_front_end_sound_device_or_service_internals() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert {m.stem for m in modules} >= {"__init__", "core", "links", "endpointing", "settings"}
    found = {f"{m.name}: {name}" for m in modules for name in _imports(m) if _forbidden(name)}
    assert not found, found


def test_the_import_check_catches_each_forbidden_form(tmp_path: Path) -> None:
    module = tmp_path / "leaky.py"
    module.write_text(
        "import sounddevice\nfrom edge_client.config import EdgeSettings\nfrom services import stt\n"
        "from services.common import channels\nimport voice.stt.v1.stt_pb2\n"
    )
    assert [name for name in _imports(module) if _forbidden(name)] == [
        "sounddevice",
        "edge_client.config",
        "edge_client.config.EdgeSettings",
        "services.stt",
    ]


def test_contradictory_settings_built_in_code_are_refused() -> None:
    with pytest.raises(ValueError, match=r"must be shorter than --silence-ms \(600\)"):
        ConversationSettings(pause_ms=DEFAULT_SILENCE_MS)
    with pytest.raises(ValueError, match=r"--pause-ms \(700\) must be shorter than --silence-ms \(500\)"):
        ConversationSettings(silence_ms=500, pause_ms=700)
    assert ConversationSettings(silence_ms=500, pause_ms=200).pause_ms == 200
