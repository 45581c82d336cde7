"""Request bodies of the OpenAI-compatible API."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from services.gateway.errors import BadRequest


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
