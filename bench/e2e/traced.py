"""What tracing costs: voice to voice with tracing off and on, on the same clips and stack.

Rounds alternate: off (the stack and the edge client as configured, no ``OTEL_*`` variable),
then on (the STT, LLM and TTS containers recreated with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing
at an OTLP receiver this process runs on the compose network's gateway, and the edge client
with the same variable); the services are put back as they were at the end. Each clip is the
``silence`` row of ``bench.e2e.run``. The receiver's count of traces and spans shows that the
"on" rounds really exported.

    docker compose up -d --wait && python -m bench.e2e.traced [--clips 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from bench.e2e.outcome import Run
from bench.e2e.report import report
from bench.e2e.run import clips, edge_args, streaming
from harness.otlp import compose_host, otlp_receiver
from harness.speech import REPO

SERVICES = ("stt", "llm", "tts")
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


def compose_up(env: dict[str, str]) -> None:
    print(
        f"recreating {', '.join(SERVICES)} ({ENDPOINT}={env.get(ENDPOINT, '')!r})",
        file=sys.stderr,
        flush=True,
    )
    subprocess.run(["docker", "compose", "up", "-d", "--wait", *SERVICES], cwd=REPO, env=env, check=True)


def measure(run: Run, args: argparse.Namespace, env: dict[str, str]) -> None:
    """Each dev clip through the edge client, run with ``env``."""
    for clip in clips("dev", args.clips):
        outcome = streaming(clip, edge_args("silence", args.silence_ms, args.max_tokens), env)
        run.outcomes.append(outcome)
        latency = "-" if outcome.latency_ms is None else f"{outcome.latency_ms:.0f} ms"
        print(f"{run.row} {clip.id}: {outcome.error or latency}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=10, help="dev clips per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of off then on")
    parser.add_argument("--silence-ms", type=int, default=600)
    parser.add_argument("--max-tokens", type=int, default=40)
    args = parser.parse_args()
    plain = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    off, on = Run("tracing off", "dev"), Run("tracing on", "dev")
    host = compose_host()
    with otlp_receiver(host) as received:
        traced = {**plain, ENDPOINT: f"http://{host}:{received.port}"}
        try:
            for n in range(args.rounds):
                print(f"round {n + 1} of {args.rounds}", file=sys.stderr, flush=True)
                if n:
                    compose_up(plain)
                measure(off, args, plain)
                compose_up(traced)
                measure(on, args, traced)
        except KeyboardInterrupt:
            print("stopped: reporting what was measured", file=sys.stderr)
        finally:
            compose_up(plain)
        spans = received.spans
    traces = {s.trace_id for s in spans if s.name == "turn"}
    print(f"received {len(spans)} spans; {len(traces)} turns traced", file=sys.stderr)
    report([off, on], args.silence_ms, "e2e_traced")


if __name__ == "__main__":
    main()
