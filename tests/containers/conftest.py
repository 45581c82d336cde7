"""The compose stack, started once for the container tests.

Docker must be there: without it these tests fail, they do not skip. A stack
that was already running is left running; one started here is taken down.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from harness.speech import REPO

WAIT_S = 600
# The chat model the stack runs in the tests: the fast test-grade one (docker-compose.yml's
# default is qwen2.5-coder-1.5b); the environment may name another.
STACK_ENV = {"LLM_EMBEDDED_MODEL": "smollm2-135m"}


def compose(*args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    # An env file names its own values (the shell's would override them).
    env = dict(os.environ) if "--env-file" in args else {**STACK_ENV, **os.environ}
    done = subprocess.run(
        ["docker", "compose", *args],
        cwd=REPO,
        env=env,
        timeout=timeout,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        command = " ".join(args)
        raise AssertionError(f"docker compose {command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    was_running = bool(compose("ps", "-q").stdout.strip())
    compose("up", "-d", "--wait", "--wait-timeout", str(WAIT_S))
    yield
    if not was_running:
        compose("down", "--timeout", "10")
