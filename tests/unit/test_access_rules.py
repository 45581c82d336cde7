"""Token files, the per-client request bucket, and log redaction."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.common.auth import Tokens
from services.common.errors import ConfigError
from services.common.limits import ClientLimits
from services.common.logs import JsonFormatter, redact
from services.stt.config import SttSettings

TOKEN = "t" * 32


def test_tokens_come_from_a_file_and_the_environment_with_names(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# one a line\nkiosk:{'k' * 20}\n\n{'b' * 20}\n")
    tokens = Tokens.from_settings(SttSettings(tokens=SecretStr(f"edge:{TOKEN}"), tokens_file=str(path)))
    assert tokens.check([("authorization", f"Bearer {TOKEN}")]).client == "edge"
    assert tokens.check([("authorization", f"bearer {'k' * 20}")]).client == "kiosk"
    assert tokens.check([("authorization", f"Bearer {'b' * 20}")]).client == "client-3"
    assert "not accepted" in tokens.check([("authorization", f"Bearer {TOKEN}x")]).refusal
    assert "STT_TOKENS_FILE" in tokens.check([("authorization", "Bearer nope")]).refusal
    assert not Tokens.from_settings(SttSettings()).required


def test_short_tokens_and_missing_files_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shorter than 16"):
        Tokens.from_settings(SttSettings(tokens=SecretStr("short")))
    with pytest.raises(ConfigError, match="cannot read STT_TOKENS_FILE"):
        Tokens.from_settings(SttSettings(tokens_file=str(tmp_path / "absent")))


def test_the_request_bucket_refuses_past_the_rate_per_client() -> None:
    limits = ClientLimits(max_streams=1, max_requests_per_min=2)
    assert limits.refusal("a", streaming=False) is None
    assert limits.refusal("a", streaming=False) is None
    refused = limits.refusal("a", streaming=False)
    assert refused is not None and refused[0] == "client_requests"
    assert limits.refusal("b", streaming=True) is None
    limits.open("b")
    refused = limits.refusal("b", streaming=True)
    assert refused is not None and refused[0] == "client_streams"
    limits.close("b")


def test_a_secret_is_redacted_from_every_log_line_and_its_traceback() -> None:
    redact(["s3cret-value-for-the-log-test"])
    try:
        raise RuntimeError("upstream said: bad key s3cret-value-for-the-log-test")
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "key %s", ("s3cret-value-for-the-log-test",), None
        )
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "s3cret-value-for-the-log-test" not in line
    assert '"msg": "key [redacted]"' in line and "bad key [redacted]" in line
