"""The chat model's span of a turn, with the OpenTelemetry GenAI conventions' attributes.

A child of the client's turn where the user turn names it (its ``traceparent``); the words of
the prompt and the reply are not recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from foundation.tracing import context_of
from services.llm.conversation import TurnResult
from services.llm.engine import Options

_tracer = trace.get_tracer("voice.llm")


@contextmanager
def chat_span(
    traceparent: str, provider: str, options: Options, default_model: str
) -> Iterator[Callable[[TurnResult], None]]:
    """The span of one turn's generation; call what it gives with the turn's result."""
    started_ns = time.time_ns()
    model = options.model or default_model
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": options.max_tokens,
        "gen_ai.request.temperature": options.temperature,
    }
    with _tracer.start_as_current_span(
        f"chat {model}", context_of(traceparent), attributes=attributes
    ) as span:
        yield lambda result: _record(span, result, started_ns)


def _record(span: trace.Span, result: TurnResult, started_ns: int) -> None:
    """What the turn's generation came to: tokens, how it finished, its first token's time."""
    completion, ttft_ms = result.completion, result.timings.time_to_first_token_ms
    span.set_attributes(
        {
            "voice.engine": completion.engine,  # the engine that answered (a fallback, say)
            "gen_ai.response.finish_reasons": [completion.finish.value],
            "gen_ai.usage.input_tokens": completion.prompt_tokens,
            "gen_ai.usage.output_tokens": completion.completion_tokens,
            "voice.time_to_first_token_ms": round(ttft_ms, 1),
            "voice.tokens_per_second": round(result.timings.tokens_per_second, 1),
        }
    )
    if completion.completion_tokens:
        span.add_event("first_token", timestamp=started_ns + int(ttft_ms * 1e6))
