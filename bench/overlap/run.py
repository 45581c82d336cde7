"""Speech over a playing reply: backchannels that should let it go on, interruptions that should stop it.

Against the running compose stack, in this process and in real time: a question (a read
sentence), then, once the reply has played for a second, a clip spoken over it, then 4 s of
silence. Backchannels are a listener's "okay", "yes", "yeah", "sure", "yep" (real voices,
tests/data/backchannels); interruptions are a user's "what?", "what now?", "hey!", "why?",
"no", "one moment, please", "hold position" (real voices, tests/data/interruptions), short
answers (card names) and read sentences.

Per row (``default``: the backchannel list on; ``off``: --backchannels ""): how many
backchannels stopped the reply (false stops), how long the reply was paused for one that did
not, how many interruptions stopped it, and the time to stop, from the first loud 10 ms of
the interruption (-35 dBFS) to the moment playback stopped, and from the clip's first sample:
the recordings' background reads as voiced to webrtcvad, so the barge-in time starts to run
before the voice.

With ``--shouts``, short words said loudly or acted instead (tests/data/shouts: "No!", "Hello?",
"Wait, what?" as interruptions, "Yes, sir!", "Mm" as backchannels) and real noises (coughs,
paper) that should pause the reply and let it go on: per row, the words heard right, the
interruptions that stopped the reply, the backchannels that let it go on with their words in
the report, and the noises after which it resumed.

    docker compose up -d --wait && python -m bench.overlap.run [--rows default off] [--clips 3] [--shouts]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.e2e.run import SPEECH_DBFS
from edge_client.config import EdgeSettings
from foundation.audio import pcm16_to_float
from harness.edge import converse, loud_windows_ms, over_the_reply, silence
from harness.speech import REPO, Recording, backchannels, english, interruptions, normalize, shouts

RESULTS = REPO / "bench" / "results"
ROWS: dict[str, dict[str, Any]] = {"default": {}, "off": {"backchannels": ()}}
STORY = "Tell a long story of at least six sentences."
SOUNDS = REPO / "tests" / "data" / "sounds"
NOISES = ("cough-default", "cough-hillbilly", "cough-default-es", "cough-default-ru", "trash-empty")


@dataclass
class Outcome:
    row: str
    kind: str  # "backchannel", "interruption" or "noise"
    clip: str
    stopped: bool = False  # the reply was cut for it
    paused_ms: float | None = None  # how long the reply stood still for it, when it went on
    stop_ms: float | None = None  # from its first loud 10 ms to playback stopping
    stop_from_clip_ms: float | None = None  # from its first sample (any noise before the voice)
    said: str = ""  # what the agent transcribed of it
    heard: bool = False  # ... the words of the clip (each said at least once)
    resumed: bool = False  # the reply went on after a pause for it
    error: str = ""


def _voice_start_ms(rec: Recording) -> float:
    loud = loud_windows_ms(pcm16_to_float(rec.pcm()), 16000, SPEECH_DBFS)
    return float(loud[0]) if loud.size else 0.0


async def one(row: str, kind: str, rec: Recording) -> Outcome:
    outcome = Outcome(row, kind, rec.id)
    settings = EdgeSettings(system_prompt=STORY, max_tokens=60, **ROWS[row])
    question = english()[1]
    spoke_at: list[float] = []

    frames = over_the_reply(question.pcm(), rec.pcm() + silence(4.0), spoke_at, limit_s=0)
    with tempfile.TemporaryDirectory() as tmp:
        _, session = await converse(settings, Path(tmp), frames, timeout_s=120)
    turns = session.turns
    if not spoke_at or not turns or "first_audio" not in turns[0]["t_ms"]:  # type: ignore[operator]
        outcome.error = "no reply to speak over"
        return outcome
    first, t = turns[0], turns[0]["t_ms"]
    assert isinstance(t, dict)
    outcome.stopped = bool(first["interrupted"])
    if first["interrupted"] and "paused" in t:
        outcome.stop_from_clip_ms = t["paused"] - spoke_at[0]
        outcome.stop_ms = outcome.stop_from_clip_ms - _voice_start_ms(rec)
    elif "resumed" in t:
        outcome.paused_ms = t["resumed"] - t["paused"]
        outcome.resumed = True
    said = first.get("backchannels", [])
    assert isinstance(said, list)
    outcome.said = " ".join([*map(str, said), *(str(turn["user_text"]) for turn in turns[1:])])
    words = normalize(outcome.said).split()
    outcome.heard = bool(words) and set(words) == set(normalize(rec.text).split())
    return outcome


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


def table(outcomes: list[Outcome]) -> Table:
    out = Table(title="Speech over a playing reply")
    for column in (
        "row", "backchannels that stopped it", "paused for one p50", "p95",
        "interruptions that stopped it", "time to stop p50", "p95", "from the clip's start p50",
    ):  # fmt: skip
        out.add_column(column, justify="left" if column == "row" else "right")
    for row in dict.fromkeys(o.row for o in outcomes):
        back = [o for o in outcomes if o.row == row and o.kind == "backchannel" and not o.error]
        cut = [o for o in outcomes if o.row == row and o.kind == "interruption" and not o.error]
        paused = [o.paused_ms for o in back if o.paused_ms is not None]
        stops = [o.stop_ms for o in cut if o.stop_ms is not None]
        from_clip = [o.stop_from_clip_ms for o in cut if o.stop_from_clip_ms is not None]
        out.add_row(
            row, f"{sum(o.stopped for o in back)}/{len(back)}", _pct(paused, 50), _pct(paused, 95),
            f"{sum(o.stopped for o in cut)}/{len(cut)}", _pct(stops, 50), _pct(stops, 95),
            _pct(from_clip, 50),
        )  # fmt: skip
    return out


def shout_table(outcomes: list[Outcome]) -> Table:
    out = Table(title="Short and shouted words over a playing reply")
    for column in (
        "row", "interruptions heard", "stopped it", "backchannels heard", "went on with their words",
        "noises: went on", "noises: words",
    ):  # fmt: skip
        out.add_column(column, justify="left" if column == "row" else "right")
    for row in dict.fromkeys(o.row for o in outcomes):
        cut = [o for o in outcomes if o.row == row and o.kind == "interruption" and not o.error]
        back = [o for o in outcomes if o.row == row and o.kind == "backchannel" and not o.error]
        noise = [o for o in outcomes if o.row == row and o.kind == "noise" and not o.error]
        out.add_row(
            row, f"{sum(o.heard for o in cut)}/{len(cut)}", f"{sum(o.stopped for o in cut)}/{len(cut)}",
            f"{sum(o.heard for o in back)}/{len(back)}",
            f"{sum(not o.stopped and bool(o.said) for o in back)}/{len(back)}",
            f"{sum(o.resumed and not o.stopped for o in noise)}/{len(noise)}",
            f"{sum(bool(o.said) for o in noise)}/{len(noise)}",
        )  # fmt: skip
    return out


def plot(outcomes: list[Outcome]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(dict.fromkeys(o.row for o in outcomes))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 1.2 * len(rows) + 2))
    left.boxplot(
        [[o.paused_ms for o in outcomes if o.row == r and o.paused_ms is not None] or [np.nan] for r in rows],
        orientation="horizontal",
        tick_labels=rows,
    )
    left.set_xlabel("reply paused for a backchannel (ms)")
    right.boxplot(
        [[o.stop_ms for o in outcomes if o.row == r and o.stop_ms is not None] or [np.nan] for r in rows],
        orientation="horizontal",
        tick_labels=rows,
    )
    right.axvline(400, color="red", linestyle="--", label="target 400 ms")
    right.set_xlabel("interruption: voice to playback stopped (ms)")
    right.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "overlap.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--clips", type=int, help="at most this many clips of each kind")
    parser.add_argument("--shouts", action="store_true", help="short and shouted words, and real noises")
    args = parser.parse_args()
    cutting_in = interruptions() + [r for r in english() if r.id.startswith("cards/")] + english()[2:5]
    sets = {"backchannel": backchannels()[: args.clips], "interruption": cutting_in[: args.clips]}
    if args.shouts:
        noises = [Recording(n, SOUNDS / f"{n}.wav", "", 0.0, "en") for n in NOISES]
        sets = {
            "interruption": shouts("interruption")[: args.clips],
            "backchannel": shouts("backchannel")[: args.clips],
            "noise": noises[: args.clips],
        }
    outcomes: list[Outcome] = []
    try:
        for kind, recs in sets.items():
            for rec in recs:
                for row in args.rows:  # each clip through each row in turn: a slow spell hits all alike
                    outcomes.append(outcome := asyncio.run(one(row, kind, rec)))
                    print(
                        f"{row} {kind} {rec.id}: "
                        f"{outcome.error or ('stopped' if outcome.stopped else 'went on')} {outcome.said!r}",
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("stopped: reporting what was measured", file=sys.stderr)
    Console(width=None if sys.stdout.isatty() else 160).print(
        shout_table(outcomes) if args.shouts else table(outcomes)
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "overlap_shouts.json" if args.shouts else "overlap.json"
    (RESULTS / name).write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    if args.shouts:
        print(f"wrote {RESULTS / name}")
        return
    plot(outcomes)
    print(f"wrote {RESULTS / 'overlap.json'} and {RESULTS / 'overlap.png'}")


if __name__ == "__main__":
    main()
