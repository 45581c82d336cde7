"""Edge client settings: flags, with defaults from the environment."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from conversation.backchannel import DEFAULT_BACKCHANNELS
from conversation.settings import (
    DEFAULT_BARGE_IN_MS,
    DEFAULT_FALLBACK_SILENCE_MS,
    DEFAULT_LLM,
    DEFAULT_PAUSE_MS,
    DEFAULT_RESUME_MS,
    DEFAULT_SILENCE_MS,
    DEFAULT_STT,
    DEFAULT_TTS,
    DEFAULT_TURN_DETECTOR,
    DEFAULT_VAD_AGGRESSIVENESS,
    TURN_DETECTORS,
    ConversationSettings,
)
from foundation.channels import Security

# The voice's own rate: no resampling on either side.
DEFAULT_OUTPUT_RATE_HZ = 22050
# The simulated room of file mode (--echo-db): the echo's delay. The microphone frame
# after the one being played is the earliest that can hear it, hence the floor.
DEFAULT_ECHO_DELAY_MS = 80
MIN_FILE_ECHO_DELAY_MS = 35


@dataclass(frozen=True)
class EdgeSettings(ConversationSettings):
    """The conversation's settings, and the sound devices, files and echo canceller around it."""

    input_device: str | None = None
    output_device: str | None = None
    # Echo cancellation of the speaker's sound in the microphone (in full duplex).
    aec: bool = True
    # File mode: a simulated room feeds the recorded output back into the input
    # at this gain (dB), after echo_delay_ms. None: no echo.
    echo_db: float | None = None
    echo_delay_ms: int = DEFAULT_ECHO_DELAY_MS
    output_rate_hz: int = DEFAULT_OUTPUT_RATE_HZ
    input_file: Path | None = None
    output_file: Path | None = None
    report_file: Path | None = None
    fast: bool = False
    text: bool = False


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="voice-agent",
        description="Talk with the voice agent: microphone -> STT -> LLM -> TTS -> speaker, with barge-in.",
    )
    p.add_argument(
        "--stt", default=env("STT_ADDRESS", DEFAULT_STT), help="STT service address (env STT_ADDRESS)"
    )
    p.add_argument(
        "--llm", default=env("LLM_ADDRESS", DEFAULT_LLM), help="LLM service address (env LLM_ADDRESS)"
    )
    p.add_argument(
        "--tts", default=env("TTS_ADDRESS", DEFAULT_TTS), help="TTS service address (env TTS_ADDRESS)"
    )
    p.add_argument("--input-device", help="microphone, by index or name (see --list-devices)")
    p.add_argument("--output-device", help="speaker, by index or name (see --list-devices)")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--test-mic", action="store_true", help="show the microphone level for a few seconds")
    p.add_argument("--test-speaker", action="store_true", help="play a tone")
    p.add_argument("--vad-aggressiveness", type=int, choices=range(4), default=DEFAULT_VAD_AGGRESSIVENESS)
    p.add_argument(
        "--turn-detector",
        choices=TURN_DETECTORS,
        default=DEFAULT_TURN_DETECTOR,
        help="silence: the silence ends your turn; smart: a model judges each pause (falls back to "
        "silence where the service has none); bounded: your words so far and the model judge each "
        "pause: done ends the turn at once, unsure waits --silence-ms, plainly unfinished "
        "--max-silence-ms",
    )
    p.add_argument(
        "--silence-ms",
        type=int,
        help=f"silence that ends your turn ({DEFAULT_SILENCE_MS}); with the smart detector, "
        f"the longest wait when it judges you not done ({DEFAULT_FALLBACK_SILENCE_MS})",
    )
    p.add_argument(
        "--max-silence-ms",
        type=int,
        default=DEFAULT_FALLBACK_SILENCE_MS,
        help="with --turn-detector bounded: the silence that ends a turn whose words are plainly "
        f'unfinished ("my number is"; {DEFAULT_FALLBACK_SILENCE_MS})',
    )
    p.add_argument(
        "--pause-ms",
        type=int,
        help=f"pause after which a reply is prepared, played only if the silence lasts "
        f"({DEFAULT_PAUSE_MS} with --turn-detector silence or bounded; 0: off; not with smart)",
    )
    p.add_argument(
        "--barge-in-ms",
        type=int,
        default=DEFAULT_BARGE_IN_MS,
        help="voiced sound that pauses the agent; it stops if words are transcribed",
    )
    p.add_argument(
        "--resume-ms",
        type=int,
        default=DEFAULT_RESUME_MS,
        help="quiet after a pause with no words transcribed, after which the agent goes on",
    )
    p.add_argument(
        "--backchannels",
        help='what you may say over a reply without stopping it ("mm-hmm", "yeah"), comma-separated; '
        '"" for none (default: a short list in English and Russian)',
    )
    p.add_argument(
        "--duplex",
        choices=["full", "half"],
        default="full",
        help="full: speak to interrupt the agent; half: the mic is muted while it speaks (no echo canceller)",
    )
    p.add_argument(
        "--aec",
        choices=["on", "off"],
        default="on",
        help="echo cancellation in full duplex, for open speakers (default on; with --input only "
        "with --echo-db, as a file hears no speaker; off suits a headset)",
    )
    p.add_argument(
        "--echo-db",
        type=float,
        help="with --input and --output: a simulated room plays the output back into the input at this gain",
    )
    p.add_argument(
        "--echo-delay-ms",
        type=int,
        default=DEFAULT_ECHO_DELAY_MS,
        help=f"with --echo-db: the echo's delay (at least {MIN_FILE_ECHO_DELAY_MS})",
    )
    p.add_argument("--voice", default="", help="TTS voice name (default: the service's)")
    p.add_argument(
        "--system-prompt", default="", help="the assistant's instructions (default: the service's)"
    )
    p.add_argument(
        "--max-tokens", type=int, default=0, help="longest reply, in tokens (default: the service's)"
    )
    p.add_argument("--input", type=Path, help="a WAV file to use as the microphone")
    p.add_argument("--output", type=Path, help="record what the speaker plays into a WAV file")
    p.add_argument("--report", type=Path, help="write one JSON line per turn")
    p.add_argument("--fast", action="store_true", help="with --input: do not pace the file in real time")
    p.add_argument("--text", action="store_true", help="type instead of speaking")
    p.add_argument(
        "--tls",
        action="store_true",
        default=env("VOICE_AGENT_TLS", "") not in ("", "0", "false"),
        help="speak TLS to the services (env VOICE_AGENT_TLS=1; implied by --ca/--cert)",
    )
    p.add_argument(
        "--ca", type=Path, default=env("VOICE_AGENT_CA"), help="CA certificate to trust (env VOICE_AGENT_CA)"
    )
    p.add_argument(
        "--cert",
        type=Path,
        default=env("VOICE_AGENT_CERT"),
        help="client certificate for mutual TLS (env VOICE_AGENT_CERT)",
    )
    p.add_argument("--key", type=Path, default=env("VOICE_AGENT_KEY"), help="its key (env VOICE_AGENT_KEY)")
    p.add_argument(
        "--token", default=env("VOICE_AGENT_TOKEN", ""), help="access token (env VOICE_AGENT_TOKEN)"
    )
    return p


def from_args(args: argparse.Namespace) -> EdgeSettings:
    if args.echo_db is not None and (args.input is None or args.output is None):
        parser().error("--echo-db simulates a room in file mode: give --input and --output too")
    if args.echo_delay_ms < MIN_FILE_ECHO_DELAY_MS:
        parser().error(f"--echo-delay-ms must be at least {MIN_FILE_ECHO_DELAY_MS}")
    try:
        return _settings(args)
    except ValueError as exc:
        parser().error(str(exc))


def _settings(args: argparse.Namespace) -> EdgeSettings:
    return EdgeSettings(
        stt=args.stt,
        llm=args.llm,
        tts=args.tts,
        input_device=args.input_device,
        output_device=args.output_device,
        vad_aggressiveness=args.vad_aggressiveness,
        silence_ms=args.silence_ms,
        turn_detector=args.turn_detector,
        pause_ms=args.pause_ms,
        max_silence_ms=args.max_silence_ms,
        barge_in_ms=args.barge_in_ms,
        resume_ms=args.resume_ms,
        backchannels=(
            DEFAULT_BACKCHANNELS
            if args.backchannels is None
            else tuple(p.strip() for p in args.backchannels.split(",") if p.strip())
        ),
        duplex=args.duplex,
        aec=args.aec == "on",
        echo_db=args.echo_db,
        echo_delay_ms=args.echo_delay_ms,
        voice=args.voice,
        system_prompt=args.system_prompt,
        max_tokens=args.max_tokens,
        input_file=args.input,
        output_file=args.output,
        report_file=args.report,
        fast=args.fast,
        text=args.text,
        security=Security(
            tls=args.tls or args.ca is not None or args.cert is not None,
            ca=args.ca,
            cert=args.cert,
            key=args.key,
            token=args.token,
        ),
    )
