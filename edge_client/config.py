"""Edge client settings: flags, with defaults from the environment."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path

from conversation.settings import SETTINGS, ConversationSettings, SettingError, flag
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
    # WebRTC noise suppression of the microphone (a noisy room, a fan, a street).
    noise_suppression: bool = False
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
    _add_settings(p)
    p.add_argument("--input-device", help="microphone, by index or name (see --list-devices)")
    p.add_argument("--output-device", help="speaker, by index or name (see --list-devices)")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--test-mic", action="store_true", help="show the microphone level for a few seconds")
    p.add_argument("--test-speaker", action="store_true", help="play a tone")
    p.add_argument(
        "--aec",
        choices=["on", "off"],
        default="on",
        help="echo cancellation in full duplex, for open speakers (default on; with --input only "
        "with --echo-db, as a file hears no speaker; off suits a headset)",
    )
    p.add_argument(
        "--noise-suppression",
        choices=["on", "off"],
        default="off",
        help="WebRTC noise suppression of the microphone, for a noisy room (default off)",
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
    p.add_argument("--input", type=Path, help="a WAV file to use as the microphone")
    p.add_argument("--output", type=Path, help="record what the speaker plays into a WAV file")
    p.add_argument("--report", type=Path, help="write one JSON line per turn")
    p.add_argument(
        "--fast",
        action="store_true",
        help="with --input: do not pace the file in real time; with --text and --output: record "
        "each reply as fast as it comes",
    )
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


def _add_settings(p: argparse.ArgumentParser) -> None:
    """The conversation's flags, made from its settings' definitions (``conversation.settings``)."""
    defaults = {f.name: f.default for f in fields(ConversationSettings)}
    for name, s in SETTINGS.items():
        default = os.environ.get(s.env, defaults[name]) if s.env else defaults[name]
        p.add_argument(
            s.flag,
            dest=name,
            type=s.parse,
            choices=s.choices,
            default=default,
            help=(f"{s.help} (env {s.env})" if s.env else s.help) or None,
        )


def from_args(args: argparse.Namespace) -> EdgeSettings:
    if args.echo_db is not None and (args.input is None or args.output is None):
        parser().error("--echo-db simulates a room in file mode: give --input and --output too")
    if args.echo_delay_ms < MIN_FILE_ECHO_DELAY_MS:
        parser().error(f"--echo-delay-ms must be at least {MIN_FILE_ECHO_DELAY_MS}")
    try:
        return _settings(args)
    except SettingError as exc:
        parser().error(exc.render(flag))


def _settings(args: argparse.Namespace) -> EdgeSettings:
    return EdgeSettings(
        **{name: getattr(args, name) for name in SETTINGS},
        input_device=args.input_device,
        output_device=args.output_device,
        aec=args.aec == "on",
        noise_suppression=args.noise_suppression == "on",
        echo_db=args.echo_db,
        echo_delay_ms=args.echo_delay_ms,
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
