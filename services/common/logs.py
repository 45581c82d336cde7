"""Structured logs: one JSON object a line on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({})))
_REDACTED = "[redacted]"
# Values no log line may show (access tokens, API keys), whoever logs them.
_secrets: set[str] = set()


def redact(values: list[str]) -> None:
    """Replace each of ``values`` by "[redacted]" in every log line from now on."""
    _secrets.update(v for v in values if v)


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON, with any ``extra={...}`` fields kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = json.dumps(entry, default=str)
        for secret in _secrets:
            line = line.replace(secret, _REDACTED)
        return line


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
