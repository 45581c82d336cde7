"""The floors of the code: arrows point down only, the core speaks no protobuf, no module is huge.

    front doors (edge_client, services.gateway) -> conversation -> foundation -> protos (voice)
    services.{stt,llm,tts,gateway} -> services.common -> foundation
    tests, bench -> harness -> everything they drive

Each rule is checked on the source (the modules' import statements), and each check is shown
to catch what it is for.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conversation.settings import DEFAULT_SILENCE_MS, ConversationSettings
from harness.speech import REPO

_DRIVEN = {"foundation", "conversation", "edge_client", "services", "voice"}
# What each floor may import (its own package, and those below it); the longest prefix rules.
ALLOWED = {
    "foundation": {"foundation"},
    "conversation": {"conversation", "foundation", "voice"},
    "services.common": {"services.common", "foundation", "voice"},
    "services.stt": {"services.stt", "services.common", "foundation", "voice"},
    "services.llm": {"services.llm", "services.common", "foundation", "voice"},
    "services.tts": {"services.tts", "services.common", "foundation", "voice"},
    "services.gateway": {"services.gateway", "services.common", "conversation", "foundation", "voice"},
    "edge_client": {"edge_client", "conversation", "foundation", "voice"},
    "harness": {"harness"} | _DRIVEN,
    "bench": {"bench", "harness"} | _DRIVEN,
}
FIRST_PARTY = {"foundation", "conversation", "services", "edge_client", "harness", "bench", "tests", "voice"}
# In the core, only the links translate the services' messages.
PROTOBUF_IN_CORE = "conversation/links/"
MAX_CORE_LINES = 350


def imports(path: Path) -> list[str]:
    """The first-party modules ``path`` imports (absolute imports)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.append(node.module)
    return [n for n in names if n.split(".")[0] in FIRST_PARTY]


def floor(module: str) -> str | None:
    """The floor a module belongs to: the longest ``ALLOWED`` key it falls under."""
    found = [key for key in ALLOWED if module == key or module.startswith(f"{key}.")]
    return max(found, key=len) if found else None


def within(name: str, packages: set[str]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def upward(root: Path) -> list[str]:
    """Each import that runs up a floor, as "module: imported"."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "protos" in path.parts or ".venv" in path.parts:
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        if (key := floor(module)) is None:
            continue
        found += [f"{module}: {name}" for name in imports(path) if not within(name, ALLOWED[key])]
    return found


def protobuf_in_core(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "conversation").rglob("*.py")):
        if PROTOBUF_IN_CORE in path.relative_to(root).as_posix():
            continue
        text = path.read_text()
        found += [f"{path.name}: {n}" for n in imports(path) if n.startswith("voice")]
        found += [f"{path.name}: grpc" for word in ("import grpc", "from grpc") if word in text]
    return found


def test_arrows_point_down_only() -> None:
    assert not upward(REPO), upward(REPO)


def test_no_module_of_the_core_but_the_links_speaks_protobuf() -> None:
    assert not protobuf_in_core(REPO), protobuf_in_core(REPO)


def test_no_file_of_the_core_is_huge() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "conversation").rglob("*.py")}
    assert max(sizes.values()) <= MAX_CORE_LINES, sizes


def test_each_check_catches_what_it_is_for(tmp_path: Path) -> None:
    for module, line in (
        ("conversation/leak.py", "from services.common.channels import Security\n"),
        ("edge_client/leak.py", "from services.stt.models import tiny_en_path\n"),
        ("foundation/leak.py", "import conversation.core\n"),
        ("bench/leak.py", "from tests.containers.conftest import compose\n"),
        ("services/common/leak.py", "from services.gateway import channels\n"),
        ("services/stt/leak.py", "from conversation import Conversation\n"),
    ):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text(line)
        assert len(upward(tmp_path)) == 1, module
        (tmp_path / module).unlink()
    (tmp_path / "conversation" / "core.py").write_text("from voice.stt.v1 import stt_pb2\nimport grpc\n")
    (tmp_path / "conversation" / "links").mkdir()
    (tmp_path / "conversation" / "links" / "stt.py").write_text("from voice.stt.v1 import stt_pb2\n")
    assert protobuf_in_core(tmp_path) == ["core.py: voice.stt.v1", "core.py: grpc"]


@pytest.mark.parametrize("package", ["conversation", "edge_client"])
def test_no_cycle_between_floors(package: str) -> None:
    """A floor that imports another is not imported by it (the gateway and the core, say)."""
    for other in ALLOWED[package] - {package}:
        if other in ALLOWED:
            assert package not in ALLOWED[other], (package, other)


def test_contradictory_settings_built_in_code_are_refused() -> None:
    with pytest.raises(ValueError, match=r"must be shorter than --silence-ms \(600\)"):
        ConversationSettings(pause_ms=DEFAULT_SILENCE_MS)
    with pytest.raises(ValueError, match=r"--pause-ms \(700\) must be shorter than --silence-ms \(500\)"):
        ConversationSettings(silence_ms=500, pause_ms=700)
    assert ConversationSettings(silence_ms=500, pause_ms=200).pause_ms == 200
