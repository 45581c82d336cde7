"""The gateway's page in Debian's headless Chromium, with a fake microphone fed from a WAV."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from harness.edge import write_wav
from harness.speech import Recording, at_rate

MIC_RATE_HZ = 48_000


def microphone(path: Path, parts: list[Recording | bytes | float]) -> None:
    """A WAV of recordings (or 16 kHz PCM) and seconds of silence, in order: a fake microphone."""
    audio = b""
    for part in parts:
        if isinstance(part, float | int):
            audio += bytes(round(part * MIC_RATE_HZ) * 2)
        else:
            audio += at_rate(part if isinstance(part, bytes) else part.pcm(), MIC_RATE_HZ)
    write_wav(path, audio, MIC_RATE_HZ)


def talk(url: str, microphone: Path, replies: int, timeout_s: float) -> dict[str, Any]:
    """Open the page, press Talk, and return its record once ``replies`` replies are done."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(url)
        driver.find_element(By.ID, "talk").click()
        deadline = time.monotonic() + timeout_s
        record: dict[str, Any] = {}
        while time.monotonic() < deadline:
            record = driver.execute_script("return window.voiceAgent")
            if len(record["ai"]) >= replies:
                break
            time.sleep(0.2)
        record["log"] = driver.find_element(By.ID, "log").text
        return record
    finally:
        driver.quit()
