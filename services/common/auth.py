"""Access tokens: ``authorization: Bearer <token>`` checked against a configured set."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.common.config import ServerSettings
from services.common.errors import ConfigError

_SCHEME = "bearer "


@dataclass(frozen=True)
class Verdict:
    """Who the caller is (the token's name), or why it was refused."""

    client: str | None
    refusal: str = ""


def _parse(lines: Iterable[str]) -> list[tuple[str, bytes]]:
    tokens: list[tuple[str, bytes]] = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        if not sep:
            name, token = f"client-{len(tokens) + 1}", line
        tokens.append((name.strip() or f"client-{len(tokens) + 1}", token.strip().encode()))
    return tokens


class Tokens:
    """The accepted tokens, each with a name that logs may show in its place."""

    def __init__(self, tokens: list[tuple[str, bytes]], source: str = "") -> None:
        self._tokens = tokens
        self.source = source

    @staticmethod
    def from_settings(settings: ServerSettings) -> Tokens:
        return Tokens.load(
            settings.tokens.get_secret_value(),
            settings.tokens_file,
            settings.env_name("tokens"),
            settings.env_name("tokens_file"),
        )

    @staticmethod
    def load(inline: str, path: str, inline_name: str, path_name: str) -> Tokens:
        """Tokens comma-separated in ``inline`` and a line each in the file at ``path``; the names
        are the settings that gave them, for messages."""
        lines = inline.split(",")
        source = inline_name
        if path:
            try:
                lines += Path(path).read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read {path_name}={path}: {exc.strerror}") from exc
            source = path_name
        tokens = _parse(lines)
        if any(len(token) < 16 for _, token in tokens):
            raise ConfigError(f"an access token in {source} is shorter than 16 characters; make a longer one")
        return Tokens(tokens, source)

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def values(self) -> list[str]:
        return [token.decode() for _, token in self._tokens]

    def check(self, metadata: Iterable[tuple[str, str | bytes]]) -> Verdict:
        if not self._tokens:
            return Verdict(None)
        header = next((value for key, value in metadata if key == "authorization"), None)
        if header is None:
            return Verdict(
                None,
                "this service needs an access token: send the metadata `authorization: Bearer <token>` "
                "(voice-agent --token, or VOICE_AGENT_TOKEN)",
            )
        text = header.decode(errors="replace") if isinstance(header, bytes) else header
        if not text.lower().startswith(_SCHEME):
            return Verdict(None, "the authorization metadata must read `Bearer <token>`")
        presented = text[len(_SCHEME) :].strip().encode()
        client = None
        # Every token is compared, in constant time each, so timing tells nothing of a near match.
        for name, token in self._tokens:
            if hmac.compare_digest(presented, token) and client is None:
                client = name
        if client is None:
            return Verdict(
                None, f"the access token was not accepted; check it against the service's {self.source}"
            )
        return Verdict(client)
