"""Tables (rich), JSON and a plot of the end-to-end benchmark, in bench/results/."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.e2e.outcome import Run
from harness.speech import REPO, corpus_wer

RESULTS = REPO / "bench" / "results"
STAGES = ("VAD end", "endpoint", "final transcript", "first token", "first audio", "playback")


def _latencies(run: Run) -> list[float]:
    return [o.latency_ms for o in run.outcomes if o.latency_ms is not None]


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


def _failures(run: Run) -> int:
    return sum(o.latency_ms is None for o in run.outcomes)


def _cut_offs(run: Run) -> str:
    return f"{sum(o.cut_off for o in run.outcomes)}/{len(run.outcomes)}"


def _user_wer(run: Run) -> str:
    """Word error rate of what the agent transcribed of the user, over the clips it ran on."""
    pairs = [(o.reference, o.heard) for o in run.outcomes if o.reference]
    return f"{corpus_wer(pairs):.3f}" if pairs else "-"


def _merged(runs: list[Run], row: str, sets: tuple[str, ...]) -> Run | None:
    parts = [r for r in runs if r.row == row and r.set in sets]
    if len(parts) < 2:
        return None
    return Run(row, "+".join(p.set for p in parts), [o for p in parts for o in p.outcomes])


def latency_table(runs: list[Run]) -> Table:
    table = Table(title="Voice-to-voice latency: true end of speech -> first reply sample (ms)")
    for column in ("row", "set", "n", "failed", "cut off", "user WER", "p50", "p95"):
        table.add_column(column, justify="left" if column in ("row", "set") else "right")
    for stage in STAGES:
        table.add_column(f"{stage} p50", justify="right")
    shown: list[Run] = []
    for row in dict.fromkeys(r.row for r in runs):
        shown += [r for r in runs if r.row == row]
        if (both := _merged(runs, row, ("dev", "short"))) is not None:
            shown.append(both)
    for run in shown:
        lat = _latencies(run)
        stages = [[o.stages_ms[s] for o in run.outcomes if s in o.stages_ms] for s in STAGES]
        table.add_row(
            run.row, run.set, str(len(run.outcomes)), str(_failures(run)), _cut_offs(run), _user_wer(run),
            _pct(lat, 50), _pct(lat, 95), *(_pct(values, 50) for values in stages),
        )  # fmt: skip
    return table


def turn_table(runs: list[Run]) -> Table:
    table = Table(title="Turn-taking: paused sentences (400-900 ms pauses) and short complete turns")
    for column in (
        "detector", "paused cut off", "paused p50 (n ok)", "paused p95",
        "dev cut off", "short cut off", "short p50 (n ok)",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "detector" else "right")
    for row in dict.fromkeys(r.row for r in runs if r.row != "sequential"):
        by_set = {r.set: r for r in runs if r.row == row}
        cells: list[str] = []
        for name, columns in (
            ("paused", ("cut", "p50", "p95")),
            ("dev", ("cut",)),
            ("short", ("cut", "p50")),
        ):
            run = by_set.get(name)
            lat = _latencies(run) if run else []
            for column in columns:
                if run is None:
                    cells.append("-")
                elif column == "cut":
                    cells.append(_cut_offs(run))
                elif column == "p50":
                    cells.append(f"{_pct(lat, 50)} ({len(lat)}/{len(run.outcomes)})")
                else:
                    cells.append(_pct(lat, 95))
        table.add_row(row, *cells)
    return table


def report(runs: list[Run], silence_ms: int, name: str = "e2e") -> None:
    rows = list(dict.fromkeys(r.row for r in runs))
    runs = sorted(runs, key=lambda r: rows.index(r.row))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(latency_table(runs))
    console.print(turn_table(runs))
    console.print(f"silence row: end of turn after {silence_ms} ms; smart: model, fallback 1600 ms")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    plot(runs, RESULTS / f"{name}_latency.png")
    print(f"wrote {RESULTS / f'{name}.json'} and {RESULTS / f'{name}_latency.png'}")


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r.row} / {r.set}" for r in runs]
    fig, (left, middle, right) = plt.subplots(
        1, 3, figsize=(17, 0.5 * len(runs) + 2.5), gridspec_kw={"width_ratios": [3, 3, 1.3]}
    )
    left.boxplot([_latencies(r) or [np.nan] for r in runs], orientation="horizontal", tick_labels=names)
    left.axvline(800, color="red", linestyle="--", label="target 800 ms")
    left.set_xlabel("voice-to-voice latency (ms)")
    left.legend()
    lefts = np.zeros(len(runs))
    for stage in STAGES:
        widths = np.array(
            [np.median([o.stages_ms.get(stage, 0.0) for o in r.outcomes if o.stages_ms] or [0]) for r in runs]
        )
        middle.barh(names, widths, left=lefts, label=stage)
        lefts += widths
    middle.set_xlabel("median time per stage (ms)")
    middle.set_yticks([])
    middle.legend(fontsize=8)
    rates = [sum(o.cut_off for o in r.outcomes) / max(1, len(r.outcomes)) for r in runs]
    failed = [_failures(r) / max(1, len(r.outcomes)) for r in runs]
    y = np.arange(len(runs))
    right.barh(y - 0.2, rates, height=0.4, label="cut off")
    right.barh(y + 0.2, failed, height=0.4, label="no reply")
    right.set_yticks([])
    right.set_xlim(0, 1)
    right.set_xlabel("share of clips")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
