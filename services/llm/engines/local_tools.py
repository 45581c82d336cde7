"""Tool calling on llama.cpp through the model's chat template (Qwen2.5's
``<tool_call>{"name": ..., "arguments": ...}</tool_call>``).

The model writes its reply freely and the words stream as they come; when the reply
turns into a call, generation stops there and the call is generated under grammars: the
name one of the tools, then the arguments that tool's JSON Schema. A call is so always
well-formed JSON valid for its schema. One call per generation: the next comes, when the
model wants one, after the results (the service bounds the rounds). A reply without a
call costs nothing more than before: its words are held back only while they could still
be the start of the marker.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import LlamaGrammar

from services.common.errors import InvalidArgument, VoiceError
from services.llm.engine import CallDelta, Completion, Finish, Message, OnDelta, Options, ToolCall
from services.llm.tools import api_messages, api_tools, arguments_error, new_call_id

MARKER = "<tool_call>"
# What the call's JSON begins with in the template, up to the name.
CALL_OPEN = '{"name": "'
# A call's arguments may be longer than a spoken reply.
ARGUMENT_TOKENS = 512
# The longest string argument a schema without a bound lets the model write.
STRING_CHARS = 120


@dataclass(frozen=True)
class ToolTemplate:
    """The model's chat template, rendering the prompt with tools and the assistant's header."""

    formatter: Jinja2ChatFormatter
    # The tokens a reply may not open with after the tools' results: markup, JSON or a code
    # block (the marker's own token aside), and the tokens that are only whitespace.
    openers: npt.NDArray[np.intp]
    blanks: frozenset[int]

    @classmethod
    def of(cls, llama: llama_cpp.Llama, template: str) -> ToolTemplate | None:
        """The template's tool calling; None when it has none (SmolLM2's has not). Reads the
        vocabulary once (~0.3 s for Qwen2.5's 152k tokens)."""
        if MARKER not in template:
            return None
        eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", errors="ignore")
        marker = llama.tokenize(MARKER.encode(), add_bos=False, special=True)
        openers, blanks = [], set()
        for token in range(llama.n_vocab()):
            text = llama.detokenize([token], special=True).decode("utf-8", errors="ignore")
            if not text.strip():
                blanks.add(token)
            elif _opens_a_call(text) and [token] != marker:
                openers.append(token)
        formatter = Jinja2ChatFormatter(template, eos, "", add_generation_prompt=True)
        return cls(formatter, np.array(openers, dtype=np.intp), frozenset(blanks))

    def words_first(self) -> llama_cpp.LogitsProcessorList:
        """Sampling that opens the reply in words: until the first token that is not
        whitespace, none of the ``openers``. After its results the model answers in words or
        calls again with the marker; at temperature 0.7 Qwen2.5-Coder-1.5B otherwise opens one
        answer in five with the call and its result as JSON, read as a second call."""
        start: int | None = None

        def process(
            input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]
        ) -> npt.NDArray[np.single]:
            nonlocal start
            start = len(input_ids) if start is None else start
            if all(int(token) in self.blanks for token in input_ids[start:]):
                scores[self.openers] = -np.inf
            return scores

        return llama_cpp.LogitsProcessorList([process])


def generate_with_tools(
    llama: llama_cpp.Llama,
    template: ToolTemplate,
    messages: Sequence[Message],
    options: Options,
    on_delta: OnDelta,
    cancel: threading.Event,
) -> Completion:
    dicts = api_messages(messages, parsed_arguments=True)
    prompt = template.formatter(messages=cast(Any, dicts), tools=cast(Any, api_tools(options.tools))).prompt
    run = _Run(llama, on_delta, cancel)
    words = ""
    if options.tool_choice in ("auto", "none"):
        after_results = bool(messages) and messages[-1].role == "tool"
        words, called = run.words(prompt, options, template.words_first() if after_results else None)
        if not called or options.tool_choice == "none" or run.finish is not Finish.STOP:
            return run.completion(words)
    call = run.call(prompt + words + MARKER + "\n", options)
    if call is None:
        return run.completion(words)
    return run.completion(words, call)


def _bounded(schema: Any) -> Any:
    """``schema`` with every string that has no bound held to ``STRING_CHARS``: a model that
    runs on in a string (Qwen2.5-Coder wrote "3,550" as "355000000..." to the token limit)
    closes it there, and the call is made (the tool can say what is wrong with it)."""
    if isinstance(schema, list):
        return [_bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    bounded = {key: _bounded(value) for key, value in schema.items()}
    if (
        bounded.get("type") == "string"
        and "maxLength" not in bounded
        and not {"enum", "const"} & set(bounded)
    ):
        bounded["maxLength"] = STRING_CHARS
    return bounded


def _call_start(text: str) -> int | None:
    """Where a call begins in the reply so far: at the marker, or at a reply that opens with
    markup, JSON or a code block (Qwen2.5-Coder sometimes writes its call as ``{"name": ...}``
    alone, in other tags or in a code block; no spoken reply begins with '{', '<' or '`')."""
    at = text.find(MARKER)
    if at >= 0:
        return at
    words = text.lstrip()
    return len(text) - len(words) if _opens_a_call(words) else None


def _opens_a_call(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "<", "`")


def _held(text: str) -> int:
    """How many characters at the end of ``text`` may still become a call's start."""
    if not text.strip():
        return len(text)
    for size in range(len(MARKER) - 1, 0, -1):
        if text.endswith(MARKER[:size]):
            return size
    return 0


class _Run:
    """One generation: its streams, token counts and how it ended."""

    def __init__(self, llama: llama_cpp.Llama, on_delta: OnDelta, cancel: threading.Event) -> None:
        self.llama = llama
        self.on_delta = on_delta
        self.cancel = cancel
        self.finish = Finish.STOP
        self.prompt_tokens = 0
        self.tokens = 0

    def words(
        self, prompt: str, options: Options, processor: llama_cpp.LogitsProcessorList | None = None
    ) -> tuple[str, bool]:
        """Stream the reply's words until it ends or a call begins; the words, and whether a call began."""
        text, sent = "", 0
        for piece in self._stream(prompt, options.max_tokens, options.temperature, processor=processor):
            text += piece
            start = _call_start(text)
            if start is not None:
                words = text[:start].rstrip()
                if len(words) > sent:
                    self.on_delta(words[sent:])
                return words, True
            ready = len(text) - _held(text)
            if ready > sent:
                self.on_delta(text[sent:ready])
                sent = ready
        if self.finish is not Finish.CANCELLED and len(text) > sent:
            self.on_delta(text[sent:])
        return text, False

    def call(self, prompt: str, options: Options) -> ToolCall | None:
        """Generate one call under grammars, streaming it; None when cancelled."""
        tools = {tool.name: tool for tool in options.tools}
        name = options.tool_choice if options.tool_choice in tools else ""
        if not name and len(tools) == 1:
            name = next(iter(tools))
        if not name:
            names = "root ::= " + " | ".join(json.dumps(n) for n in tools)
            name = "".join(self._stream(prompt + CALL_OPEN, len(names), 0.0, names))
            if self.finish is Finish.CANCELLED:
                return None
            if name not in tools:
                raise VoiceError(f"the model began a tool call without a tool's name (wrote {name!r})")
        tool = tools[name]
        call_id = new_call_id()
        self.on_delta(CallDelta(0, call_id, name))
        schema = LlamaGrammar.from_json_schema(json.dumps(_bounded(tool.parameters)), verbose=False)
        parts: list[str] = []
        for piece in self._stream(
            prompt + CALL_OPEN + name + '", "arguments": ', ARGUMENT_TOKENS, 0.0, schema
        ):
            parts.append(piece)
            self.on_delta(CallDelta(0, arguments=piece))
        if self.finish is Finish.CANCELLED:
            return None
        arguments = "".join(parts)
        if self.finish is Finish.LENGTH or (error := arguments_error(tool, arguments)):
            why = f"longer than {ARGUMENT_TOKENS} tokens" if self.finish is Finish.LENGTH else error
            raise VoiceError(f"the model's call of {name} is unusable: {why}")
        return ToolCall(call_id, name, arguments)

    def completion(self, words: str, call: ToolCall | None = None) -> Completion:
        finish = Finish.TOOL_CALLS if call is not None else self.finish
        calls = (call,) if call is not None else ()
        return Completion(words, finish, self.prompt_tokens, self.tokens, "local", calls)

    def _stream(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        grammar: str | LlamaGrammar | None = None,
        processor: llama_cpp.LogitsProcessorList | None = None,
    ) -> Iterator[str]:
        if isinstance(grammar, str):
            grammar = LlamaGrammar.from_string(grammar, verbose=False)
        self.finish = Finish.STOP
        chunks = cast(
            Iterator[dict[str, Any]],
            self.llama.create_completion(
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
                grammar=grammar,
                logits_processor=processor,
            ),
        )
        try:
            for chunk in chunks:
                if self.cancel.is_set():
                    self.finish = Finish.CANCELLED
                    return
                if not self.prompt_tokens:
                    # The prompt is evaluated and the first token not yet counted: the prompt's length.
                    self.prompt_tokens = self.llama.n_tokens - 1
                choice = chunk["choices"][0]
                self.tokens += 1
                if choice.get("finish_reason") == "length":
                    self.finish = Finish.LENGTH
                if choice["text"]:
                    yield choice["text"]
        except ValueError as exc:  # "Requested tokens (...) exceed context window of ..."
            raise InvalidArgument(f"the conversation does not fit the model's context: {exc}") from exc
        finally:
            # Closing the generator stops llama.cpp at once: no further token is evaluated.
            chunks.close()  # type: ignore[attr-defined]
