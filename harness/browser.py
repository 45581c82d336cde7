"""The gateway's page in Debian's headless Chromium, with a fake microphone fed from a WAV.

Before the page's own script runs, a recorder of the harness's own (``window.seen``) notes what
the page was sent and what it showed, each with its ``performance.now()`` in seconds: every event
the gateway sent on the page's WebSockets (audio deltas without their audio), each change of the
state shown (``#state``) and of the agent's words shown (the latest reply), the level meter's
value every 20 ms, and the microphone the browser gave the page each time it asked for one."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from harness.edge import write_wav
from harness.speech import Recording, at_rate

MIC_RATE_HZ = 48_000
# A phone's screen (CSS pixels), as the page is shown in the tests and their screenshots.
PHONE = (412, 915)
# After the last reply, time for what follows it (its times, the state back to listening) to show.
SETTLE_S = 1.0

_RECORDER = """
window.seen = { events: [], states: [], levels: [], replies: [], microphones: [] };
const now = () => performance.now() / 1000;
const Socket = window.WebSocket;
window.WebSocket = class extends Socket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (m) => {
      const event = JSON.parse(m.data);
      if (event.type.endsWith("audio.delta")) delete event.delta;
      window.seen.events.push({ ...event, at: now() });
    });
  }
};
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await getUserMedia(constraints);
  window.seen.microphones.push(stream.getAudioTracks()[0]?.label ?? null);
  return stream;
};
document.addEventListener("DOMContentLoaded", () => {
  const state = document.getElementById("state"), level = document.getElementById("level");
  const note = () => window.seen.states.push({ state: state.textContent, at: now() });
  note();
  new MutationObserver(note).observe(state, { childList: true, characterData: true, subtree: true });
  const log = document.getElementById("log");
  new MutationObserver(() => {
    const replies = log.querySelectorAll(".ai p"), entry = replies.length - 1;
    if (entry >= 0) window.seen.replies.push({ entry, text: replies[entry].textContent, at: now() });
  }).observe(log, { childList: true, characterData: true, subtree: true });
  setInterval(() => window.seen.levels.push({ value: level.value, at: now() }), 20);
});
"""

# The page as a person sees it: each entry of the conversation, the controls that show.
_SHOWN = """
const shown = (id) => { const e = document.getElementById(id); return !!e && e.offsetParent !== null; };
return {
  entries: [...document.querySelectorAll("#log .entry")].map((e) => ({
    kind: ["you", "ai", "note"].find((k) => e.classList.contains(k)),
    text: e.querySelector("p").textContent,
    times: e.querySelector(".times")?.textContent ?? null,
  })),
  token_field: shown("token"),
  microphones: shown("mic") ? [...document.getElementById("mic").options].map((o) => o.text) : [],
};
"""


def microphone(path: Path, parts: list[Recording | bytes | float]) -> None:
    """A WAV of recordings (or 16 kHz PCM) and seconds of silence, in order: a fake microphone."""
    audio = b""
    for part in parts:
        if isinstance(part, float | int):
            audio += bytes(round(part * MIC_RATE_HZ) * 2)
        else:
            audio += at_rate(part if isinstance(part, bytes) else part.pcm(), MIC_RATE_HZ)
    write_wav(path, audio, MIC_RATE_HZ)


@contextmanager
def page(url: str, microphone: Path | None = None) -> Iterator[webdriver.Chrome]:
    """The page open in Chromium on a phone's screen, the recorder in it; ``microphone`` plays
    once, from when the page first opens it."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    flags = [
        "--headless=new",
        "--no-sandbox",
        f"--window-size={PHONE[0]},{PHONE[1]}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if microphone is not None:
        flags.append(f"--use-file-for-fake-audio-capture={microphone}%noloop")
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORDER})
        driver.get(url)
        yield driver
    finally:
        driver.quit()


def record(driver: webdriver.Chrome) -> dict[str, Any]:
    """The page's own record (``window.voiceAgent``), the recorder's (``seen``), what it shows
    (``shown``) and the conversation's text (``log``)."""
    result: dict[str, Any] = driver.execute_script("return window.voiceAgent")
    result["seen"] = driver.execute_script("return window.seen")
    result["shown"] = driver.execute_script(_SHOWN)
    result["log"] = driver.find_element(By.ID, "log").text
    return result


def screenshot(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page, below the fold too, as a PNG."""
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def talk(
    url: str, microphone: Path, replies: int, timeout_s: float, shot: Path | None = None
) -> dict[str, Any]:
    """Open the page, press Talk, and return its record once ``replies`` replies are done (and,
    with ``shot``, a screenshot of the page then)."""
    with page(url, microphone) as driver:
        driver.find_element(By.ID, "talk").click()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(driver.execute_script("return window.voiceAgent.ai")) >= replies:
                time.sleep(SETTLE_S)
                break
            time.sleep(0.2)
        if shot is not None:
            screenshot(driver, shot)
        return record(driver)
