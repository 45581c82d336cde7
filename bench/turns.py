"""Where each turn's time went: a waterfall of the last turns of a report file, as a PNG.

    python -m bench.turns turns.jsonl                  # the last 10 turns -> turns.png
    python -m bench.turns turns.jsonl --last 30 --out slow.png

The report is what ``voice-agent --report FILE`` writes (a line a turn, docs/edge-client.md).
Each turn is a bar from the end of the user's speech: to its final transcript, to the chat
model's first token, to the reply's first audio (voice to voice), with the end of the turn
marked; a turn cut short is labelled so, and one without audio (withdrawn, failed) is skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The stages, from the end of speech: (report time, label, colour).
STAGES = (
    ("transcript_final", "end of speech -> final", "#4c72b0"),
    ("first_token", "final -> first token", "#dd8452"),
    ("first_audio", "first token -> first audio", "#55a868"),
)


def read_turns(path: Path) -> list[dict[str, object]]:
    """The turns of a report that reached their first audio."""
    turns = []
    for number, line in enumerate(line for line in path.read_text().splitlines() if line.strip()):
        turn = json.loads(line)
        t = turn.get("t_ms", {})
        if all(k in t for k in ("speech_end", "first_audio")):
            turns.append({**turn, "number": number + 1})  # its place in the report
    return turns


def stages_ms(t: dict[str, float]) -> list[tuple[float, float]]:
    """Each stage's (start, length) in ms after the end of speech; a missing time adds nothing."""
    at, spans = 0.0, []
    for key, _, _ in STAGES:
        end = t[key] - t["speech_end"] if key in t else at
        spans.append((at, max(0.0, end - at)))
        at = max(at, end)
    return spans


def draw(turns: list[dict[str, object]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(turns) + 2.0))
    labels = []
    for row, turn in enumerate(turns):
        t = turn["t_ms"]
        assert isinstance(t, dict)
        for (start, length), (_, name, colour) in zip(stages_ms(t), STAGES, strict=True):
            ax.barh(row, length, left=start, color=colour, label=name if row == 0 else None)
        total = t["first_audio"] - t["speech_end"]
        ax.text(total + 10, row, f"{total:.0f} ms", va="center", fontsize=8)
        if "end_of_turn" in t:
            eot = t["end_of_turn"] - t["speech_end"]
            ax.plot([eot, eot], [row - 0.4, row + 0.4], color="black", lw=1.5,
                    label="end of turn" if row == 0 else None)  # fmt: skip
        labels.append(f"turn {turn['number']}" + (" (cut)" if turn.get("interrupted") else ""))
    ax.set_yticks(range(len(turns)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("ms after the end of the user's speech")
    ax.set_title(title)
    ax.set_xlim(0, ax.get_xlim()[1] * 1.08)  # room for the totals
    fig.legend(loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.5 / (0.45 * len(turns) + 2.0), 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report file (voice-agent --report FILE)")
    parser.add_argument("--last", type=int, default=10, help="how many of the last turns (default 10)")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: the report's name, .png)")
    args = parser.parse_args()
    turns = read_turns(args.report)[-args.last :]
    if not turns:
        raise SystemExit(f"{args.report}: no turn with a first audio to draw")
    out = args.out or args.report.with_suffix(".png")
    draw(turns, out, f"{args.report.name}: the last {len(turns)} turns")
    print(f"{out}: {len(turns)} turns")


if __name__ == "__main__":
    main()
