"""The error every floor raises for a setting that cannot work."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or wrong; the message says what to change. Raised at start, before
    serving or talking (a service reports it as FAILED_PRECONDITION)."""
