"""A SIP softphone for tests and benchmarks (pjsua2, no sound card): calls Asterisk, says what
a script says, records what it hears, and keeps a timeline of the far end's level.

One ``SipPhone`` (one pjsua2 endpoint per process) places any number of calls at once; all of
it runs in the calling thread (``place`` blocks until every call has ended).
"""

from __future__ import annotations

import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pjsua2 as pj

TICK_S = 0.02
# The far end's level (pjsua2's 0-255 scale) above which it is speaking.
VOICED_LEVEL = 8
# This much of the far end's voice after the caller's last words is a reply.
REPLIED_S = 0.5


@dataclass
class Script:
    """What one call says: ``first`` after ``lead_s``; ``second`` (if any) once ``over_reply_s`` of
    the reply has been heard (an interruption); ``digit`` after ``lead_s``; then hang up after
    ``quiet_s`` of quiet from the far end (at most ``max_s`` into the call)."""

    first: Path | None = None
    second: Path | None = None
    lead_s: float = 0.5
    over_reply_s: float = 0.8
    digit: str = ""
    quiet_s: float = 3.0
    max_s: float = 60.0
    uri: str = "sip:agent@127.0.0.1:5060"


@dataclass
class Heard:
    """A call's account: its recording, when each thing was said, and the far end's level."""

    recording: Path
    confirmed_at: float = 0.0  # seconds from the call's start
    first_at: float = -1.0
    digit_at: float = 0.0
    first_end: float = -1.0
    second_at: float = -1.0
    second_end: float = -1.0
    disconnected_at: float = -1.0
    last_status: int = 0  # SIP status of the call's end (200 when it was hung up normally)
    levels: list[tuple[float, int]] = field(default_factory=list)

    def voiced(self, start: float, end: float) -> list[float]:
        """Times of the far end's voice between ``start`` and ``end``."""
        return [t for t, level in self.levels if start <= t < end and level >= VOICED_LEVEL]


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return float(w.getnframes()) / float(w.getframerate())


class _Call(pj.Call):  # pjsua2's callbacks are its own camelCase methods
    def __init__(self, account: pj.Account, script: Script, heard: Heard) -> None:
        super().__init__(account)
        self.script, self.heard = script, heard
        self.media: Any = None
        self.state = pj.PJSIP_INV_STATE_NULL
        self.players: list[Any] = []
        self.recorder: Any = None

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        self.state = info.state
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.heard.last_status = info.lastStatusCode

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.media = self.getAudioMedia(i)
                if self.recorder is None:
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(str(self.heard.recording))
                    self.media.startTransmit(self.recorder)

    def play(self, path: Path) -> None:
        player = pj.AudioMediaPlayer()
        player.createPlayer(str(path), pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(self.media)
        self.players.append(player)


class SipPhone:
    """A pjsua2 endpoint with a null sound device, calling as ``user`` with ``password``."""

    def __init__(self, user: str, password: str, domain: str = "127.0.0.1") -> None:
        self.endpoint = pj.Endpoint()
        self.endpoint.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0
        config.uaConfig.mainThreadOnly = True
        config.logConfig.level = 1
        config.logConfig.consoleLevel = 1
        config.medConfig.noVad = True
        self.endpoint.libInit(config)
        transport = pj.TransportConfig()
        transport.boundAddress = "127.0.0.1"
        transport.port = 0
        self.endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        self.endpoint.libStart()
        self.endpoint.audDevManager().setNullDev()
        account = pj.AccountConfig()
        account.idUri = f"sip:{user}@{domain}"
        account.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        account.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        self.account = pj.Account()
        self.account.create(account)

    def place(self, scripts: list[Script], folder: Path) -> list[Heard]:
        """Every script's call at once (started 0.2 s apart); blocks until all have ended."""
        heards = [Heard(folder / f"call-{i}.wav") for i in range(len(scripts))]
        calls: list[_Call] = []
        started: list[float] = []
        for script, heard in zip(scripts, heards, strict=True):
            call = _Call(self.account, script, heard)
            call.makeCall(script.uri, pj.CallOpParam(True))
            calls.append(call)
            started.append(time.monotonic())
            self._run(0.2)
        while any(c.state != pj.PJSIP_INV_STATE_DISCONNECTED for c in calls):
            for call, start in zip(calls, started, strict=True):
                self._step(call, time.monotonic() - start)
            self._run(TICK_S)
        for call in calls:
            call.players.clear()
            call.recorder = None
        del call
        calls.clear()
        self._run(0.2)
        return heards

    def _step(self, call: _Call, now: float) -> None:
        heard, script = call.heard, call.script
        if call.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            if heard.disconnected_at < 0:
                heard.disconnected_at = now
            return
        if call.state != pj.PJSIP_INV_STATE_CONFIRMED or call.media is None:
            return
        if not heard.confirmed_at:
            heard.confirmed_at = now
        if script.digit and not heard.digit_at and now - heard.confirmed_at >= script.lead_s:
            call.dialDtmf(script.digit)
            heard.digit_at = now
        # The level the call sends into pjsua's bridge: what the far end says ("Rx" is our side).
        heard.levels.append((now, int(call.media.getTxLevel())))
        if script.first is not None and heard.first_at < 0 and now - heard.confirmed_at >= script.lead_s:
            call.play(script.first)
            heard.first_at, heard.first_end = now, now + wav_seconds(script.first)
        said_end = max(heard.first_end, heard.second_end, heard.digit_at, heard.confirmed_at)
        over_reply = len(heard.voiced(heard.first_end, now)) * TICK_S >= script.over_reply_s
        if script.second is not None and heard.second_at < 0 and heard.first_end > 0 and over_reply:
            call.play(script.second)
            heard.second_at, heard.second_end = now, now + wav_seconds(script.second)
        done = script.second is None or heard.second_at >= 0
        quiet = now - said_end >= script.quiet_s and not heard.voiced(now - script.quiet_s, now)
        replied = len(heard.voiced(said_end, now)) * TICK_S >= REPLIED_S  # not a click
        if (done and replied and quiet) or now >= script.max_s:
            call.hangup(pj.CallOpParam(True))

    def _run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.endpoint.libHandleEvents(max(1, int(left * 1000)))

    def close(self) -> None:
        self.account.shutdown()
        del self.account
        self.endpoint.libDestroy()
