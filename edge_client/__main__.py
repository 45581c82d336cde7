"""``voice-agent``: talk with the agent through the microphone and speaker, or files."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from statistics import median
from typing import IO

import grpc
from rich.console import Console

from conversation import Conversation, Events, Output
from conversation.tools import open_tools
from edge_client import audio_io, channels
from edge_client.config import EdgeSettings, from_args, parser
from edge_client.echo import EchoCanceller
from edge_client.files import WavInput, WavOutput
from edge_client.room import Room
from foundation import tracing
from foundation.audio import FRAME_BYTES, FRAME_MS, RATE_HZ
from foundation.errors import ConfigError
from foundation.health import check_reachable
from foundation.noise import NoiseSuppressor
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

# After the input file, stop once nothing has happened for this long...
_IDLE_AFTER_INPUT_S = 1.5
# ...or at the latest this long after it.
_MAX_AFTER_INPUT_S = 120.0

console = Console(stderr=True, highlight=False)
_STYLES = {"you": "bold cyan", "ai": "bold green", "latency": "dim", "note": "yellow"}
_LABELS = {"you": "You: ", "ai": "AI: ", "latency": "  ", "note": "! "}


def show(kind: str, text: str) -> None:
    if kind == "state":
        if console.is_terminal:
            console.print(f"[dim]({text})[/dim]")
        return
    console.print(f"[{_STYLES[kind]}]{_LABELS[kind]}[/]{text}", soft_wrap=True)


async def _frames_from_file(
    conversation: Conversation, settings: EdgeSettings, path: Path, output: Output, room: Room | None
) -> AsyncIterator[bytes]:
    mic = WavInput(
        path, fast=settings.fast, hold=lambda: settings.fast and conversation.agent_busy, room=room
    )
    idle_frames, after_frames = 0, 0
    async for frame in mic.frames():
        yield frame
        if isinstance(output, WavOutput):
            output.advance(FRAME_MS / 1000)
        if mic.ended:
            after_frames += 1
            idle_frames = 0 if conversation.busy else idle_frames + 1
            if idle_frames * FRAME_MS >= _IDLE_AFTER_INPUT_S * 1000:
                return
            if after_frames * FRAME_MS >= _MAX_AFTER_INPUT_S * 1000:
                show("note", "gave up waiting for the last reply")
                return


async def _frames_from_mic(settings: EdgeSettings, echo: EchoCanceller | None) -> AsyncIterator[bytes]:
    device = audio_io.resolve_device(settings.input_device, "input")
    async with audio_io.Microphone(device, echo=echo) as mic:
        async for frame in mic.frames():
            yield frame


async def _cleaned(
    frames: AsyncIterator[bytes], echo: EchoCanceller | None, noise: NoiseSuppressor | None = None
) -> AsyncIterator[bytes]:
    """The microphone frames with the speaker's echo (and the room's noise) taken out, before
    endpointing and STT."""
    async for frame in frames:
        frame = frame if echo is None else echo.clean(frame)
        yield frame if noise is None else noise.process(frame)


async def _typed_turns(conversation: Conversation) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip():
            conversation.ask(line.strip(), {"transcript_final": conversation.now_ms()})
            await asyncio.sleep(0.05)
            while conversation.busy:
                await asyncio.sleep(0.05)


# After Ctrl+C the session has this long to close before it is made to.
STOP_S = 5.0


def _stop_on_ctrl_c() -> None:
    """Ctrl+C cancels the session. If it has not ended ``STOP_S`` later, the stacks of what it
    still awaits go to stderr and it is cancelled again; ``STOP_S`` after that the process ends."""
    loop, session = asyncio.get_running_loop(), asyncio.current_task()
    assert session is not None

    def stop(tries: int = 0) -> None:
        if session.done():
            return
        if tries == 2:
            os._exit(130)
        if tries:
            show("note", f"still stopping {STOP_S:g} s after Ctrl+C; awaiting:")
            for task in asyncio.all_tasks(loop):
                task.print_stack(file=sys.stderr)
        session.cancel()
        loop.call_later(STOP_S, stop, tries + 1)

    with contextlib.suppress(NotImplementedError):  # Windows: asyncio's own Ctrl+C handling
        loop.add_signal_handler(signal.SIGINT, stop)


async def run(settings: EdgeSettings) -> int:
    _stop_on_ctrl_c()
    needed = {"llm": settings.llm, "tts": settings.tts}
    if not settings.text:
        needed["stt"] = settings.stt
    problems = channels.problems(settings.security, needed.values())
    problems = problems or await channels.check(needed, settings.security)
    problems = problems or await check_reachable(needed, settings.security)
    for problem in problems:
        show("note", problem)
    if problems:
        return 2
    if notice := await _llm_notice(settings.llm, settings.security):
        show("note", notice)

    room = None
    if settings.echo_db is not None and settings.input_file is not None and settings.output_file is not None:
        room = Room(settings.echo_db, settings.echo_delay_ms)
    # A recorded input hears no speaker but the simulated room's; where nothing can echo, the
    # canceller would only take out words the user says over the agent.
    hears_speaker = not settings.text and (settings.input_file is None or room is not None)
    echo = EchoCanceller() if settings.aec and settings.duplex == "full" and hears_speaker else None
    noise = NoiseSuppressor(RATE_HZ) if settings.noise_suppression else None
    async with contextlib.AsyncExitStack() as stack:
        output: Output
        if settings.output_file is not None:
            taps = [tap.played for tap in (room, echo) if tap is not None]
            output = WavOutput(settings.output_file, settings.output_rate_hz, taps)
            stack.callback(output.close)
        else:
            device = audio_io.resolve_device(settings.output_device, "output")
            speaker = audio_io.Speaker(device, settings.output_rate_hz, echo=echo)
            output = await stack.enter_async_context(speaker)
        report: IO[str] | None = None
        if settings.report_file is not None:
            report = stack.enter_context(settings.report_file.open("w"))
        tally = _Tally()
        tools = await stack.enter_async_context(open_tools(settings, lambda problem: show("note", problem)))
        if tools is not None:
            show("note", "tools: " + ", ".join(spec.name for spec in tools.specs()))
        conversation = Conversation(settings, output, show, report, tally, tools)
        if echo is not None:
            conversation.barge_in_ms = echo.barge_in_ms
        conversation.start()
        show(
            "note",
            "listening; speak (Ctrl+C to stop)" if not settings.text else "type a line and press Enter",
        )
        try:
            if settings.text:
                clock = asyncio.create_task(conversation.listen(_typed_clock(output, settings.fast)))
                await _typed_turns(conversation)
                clock.cancel()
            elif settings.input_file is not None:
                frames = _frames_from_file(conversation, settings, settings.input_file, output, room)
                await conversation.listen(_cleaned(frames, echo, noise))
            else:
                await conversation.listen(_cleaned(_frames_from_mic(settings, echo), echo, noise))
        finally:
            await conversation.close()
            tally.summary()
    return 0


async def _llm_notice(address: str, security: channels.Security) -> str:
    """What the chat service says a user should know about its model (a test-grade one, say)."""
    async with channels.open_channel(address, security) as channel:
        try:
            info = await llm_pb2_grpc.LlmServiceStub(channel).GetInfo(llm_pb2.GetInfoRequest(), timeout=3)
        except grpc.aio.AioRpcError:
            return ""  # an older service, or one gone since the health check: the links report that
    return str(info.notice)


async def _typed_clock(output: Output, fast: bool) -> AsyncIterator[bytes]:
    """The clock of a typed conversation: silent frames in real time; with ``fast`` and a WAV
    output, a reply is recorded as fast as it comes (the clock waits only while nothing plays)."""
    while True:
        if isinstance(output, WavOutput):
            output.advance(FRAME_MS / 1000)
        yield bytes(FRAME_BYTES)
        racing = fast and isinstance(output, WavOutput) and output.is_playing
        await asyncio.sleep(0 if racing else FRAME_MS / 1000)


class _Tally(Events):
    """The session in numbers, counted as each turn is reported (no turn is kept)."""

    door = "edge-client"

    def __init__(self) -> None:
        self.turns = self.interrupted = 0
        self.latencies_ms: list[float] = []

    def reported(self, line: dict[str, object]) -> None:
        self.turns += 1
        self.interrupted += bool(line["interrupted"])
        if isinstance(t := line["t_ms"], dict) and "first_audio" in t and "speech_end" in t:
            self.latencies_ms.append(t["first_audio"] - t["speech_end"])

    def summary(self) -> None:
        text = f"{self.turns} turns, {self.interrupted} interrupted"
        if self.latencies_ms:
            text += f"; end of speech -> first audio: median {median(self.latencies_ms):.0f} ms"
        console.print(f"[bold]Session:[/] {text}")


def _devices(args: argparse.Namespace) -> None:
    if args.list_devices:
        print(audio_io.list_devices())
    if args.test_mic:
        audio_io.test_microphone(audio_io.resolve_device(args.input_device, "input"))
    if args.test_speaker:
        audio_io.test_speaker(audio_io.resolve_device(args.output_device, "output"))


def main() -> None:
    args = parser().parse_args()
    try:
        if args.list_devices or args.test_mic or args.test_speaker:
            _devices(args)
            code = 0
        else:
            tracing.setup("voice-agent")  # off unless the OTEL_* variables ask for traces
            code = asyncio.run(run(from_args(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl+C
        code = 130
    except (audio_io.AudioDeviceError, ConfigError) as exc:
        show("note", str(exc))
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
