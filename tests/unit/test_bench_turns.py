"""``python -m bench.turns``: a waterfall of the report's last turns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.turns import read_turns, stages_ms
from harness.speech import REPO

TURNS = [
    {"t_ms": {"speech_start": 500, "speech_end": 2400, "end_of_turn": 3000, "transcript_final": 3050,
              "first_token": 3400, "first_audio": 3700}, "interrupted": False},
    {"t_ms": {"speech_start": 5000, "speech_end": 6000, "withdrawn": 6400}, "interrupted": True},
    {"t_ms": {"speech_start": 9000, "speech_end": 11000, "transcript_final": 11700,
              "first_token": 11900, "first_audio": 12300}, "interrupted": True},
]  # fmt: skip


def test_the_stages_add_up_to_voice_to_voice_and_the_png_is_written(tmp_path: Path) -> None:
    report = tmp_path / "turns.jsonl"
    report.write_text("".join(json.dumps(turn) + "\n" for turn in TURNS))
    turns = read_turns(report)
    assert [turn["number"] for turn in turns] == [1, 3]  # the one with no audio is left out
    for turn in turns:
        t = turn["t_ms"]
        assert isinstance(t, dict)
        stages = stages_ms(t)
        assert [start for start, _ in stages] == [0.0, *(start + length for start, length in stages[:-1])]
        assert sum(length for _, length in stages) == t["first_audio"] - t["speech_end"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.turns", str(report), "--last", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    png = report.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "1 turns" in done.stdout
