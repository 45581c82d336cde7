"""The committed generated code matches the .proto files."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from harness.speech import REPO


def test_generated_code_is_current(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(REPO / "protos")) for p in (REPO / "protos").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        cwd=REPO / "protos",
        check=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert len(generated) == 3 * len(protos)
    stale = [str(p) for p in generated if not filecmp.cmp(tmp_path / p, REPO / "protos" / p, shallow=False)]
    assert not stale, f"generated code is stale, run `make protos`: {stale}"
