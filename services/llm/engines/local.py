"""llama.cpp in process, on a GGUF file or one of the embedded models (services/llm/models.py).

Each conversation leases its own ``Llama`` (model weights are mmapped and shared by
the OS). llama.cpp keeps the longest matching prefix of the previous prompt in the
KV cache, and after each reply the session evaluates the tokens that close it and
open the next user message, so a turn only evaluates the new user text and turn 10
starts about as fast as turn 1. Leases return to a pool, where the next conversation
reuses the system prompt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import llama_cpp
import llama_cpp.llama_cpp as llama_c
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from services.common.errors import ConfigError, FailedPrecondition, InvalidArgument
from services.llm import models
from services.llm.config import DEFAULT_EMBEDDED_MODEL, DEFAULT_SYSTEM_PROMPT, LlmSettings
from services.llm.engine import Completion, Finish, Message, OnDelta, Options
from services.llm.engines.local_tools import ToolTemplate, generate_with_tools
from services.llm.tools import api_messages, api_tools

log = logging.getLogger(__name__)

# Llama() reads the model parameters from this function; see without_extra_buffers.
_default_model_params = llama_c.llama_model_default_params
_params_lock = threading.Lock()


def embedded_model_path(name: str = DEFAULT_EMBEDDED_MODEL) -> str:
    """The checked GGUF file of the embedded model ``name`` (services/llm/models.py)."""
    return str(models.locate(name))


@contextlib.contextmanager
def without_extra_buffers() -> Iterator[None]:
    """Load weights into plain CPU buffers. llama.cpp's extra buffer types select AMX
    kernels on CPUs that advertise AMX, and those crash (SIGSEGV on ``ldtilecfg``) in
    VMs that do not enable it. The Python binding has no parameter for this."""

    def params() -> Any:
        value = _default_model_params()
        value.use_extra_bufts = False
        return value

    with _params_lock:
        llama_c.llama_model_default_params = params
        try:
            yield
        finally:
            llama_c.llama_model_default_params = _default_model_params


class LocalEngine:
    name = "local"

    def __init__(self, settings: LlmSettings) -> None:
        self.model_path = settings.model_path or embedded_model_path(settings.embedded_model)
        if not Path(self.model_path).is_file():
            raise ConfigError(f"LLM_MODEL_PATH={self.model_path} is not a file; point it at a GGUF model")
        self.model = Path(self.model_path).stem
        self.context_tokens = settings.context_tokens
        self._threads = settings.thread_count
        self._idle: list[llama_cpp.Llama] = []
        self._pool_lock = threading.Lock()
        self._formatter: Jinja2ChatFormatter | None = None
        # The chat template's tool calling; None: the model has none and answers in words.
        self.tool_template: ToolTemplate | None = None
        self._template_read = False

    def load(self) -> None:
        llama = self._new_llama()
        # The first evaluation pages the weights in and sets up threads: do it before serving.
        # It also leaves the default system prompt in the KV cache for the first conversation.
        llama.create_chat_completion(
            [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "Hello"}],
            max_tokens=1,
        )
        self._give_back(llama)

    def open_session(self) -> LocalSession:
        """Lease a llama.cpp context for one conversation; blocking (may load one, ~0.1 s)."""
        with self._pool_lock:
            llama = self._idle.pop() if self._idle else None
        return LocalSession(self, llama or self._new_llama())

    def _new_llama(self) -> llama_cpp.Llama:
        with without_extra_buffers():
            llama = llama_cpp.Llama(
                model_path=self.model_path,
                n_ctx=self.context_tokens,
                n_threads=self._threads,
                n_threads_batch=self._threads,
                verbose=False,
            )
        with self._pool_lock:
            if not self._template_read:
                self._read_template(llama)
        return llama

    def _read_template(self, llama: llama_cpp.Llama) -> None:
        """The chat template's finished-conversation rendering and its tool calling, from the
        first context (loaded or not: a session opened without ``load`` has them too)."""
        self._template_read = True
        template = llama.metadata.get("tokenizer.chat_template")
        if template:
            # The template without the assistant header: it renders a finished conversation.
            self._formatter = Jinja2ChatFormatter(
                template,
                _token_text(llama, llama.token_eos()),
                _token_text(llama, llama.token_bos()),
                add_generation_prompt=False,
            )
            self.tool_template = ToolTemplate.of(llama, template)
        if self.tool_template is None:
            log.info("the chat template has no tool calling: tools are ignored", extra={"model": self.model})

    def _give_back(self, llama: llama_cpp.Llama) -> None:
        with self._pool_lock:
            self._idle.append(llama)


class LocalSession:
    """One conversation's llama.cpp context; its KV cache holds the conversation so far."""

    def __init__(self, engine: LocalEngine, llama: llama_cpp.Llama) -> None:
        self._engine = engine
        self._llama: llama_cpp.Llama | None = llama
        self._state = threading.Lock()
        self._generating = False
        self._closed = False

    def generate(
        self, messages: Sequence[Message], options: Options, on_delta: OnDelta, cancel: threading.Event
    ) -> Completion:
        with self._state:
            if self._closed or self._llama is None:
                raise FailedPrecondition("the conversation is closed")
            if self._generating:
                raise FailedPrecondition("a reply is already being generated in this conversation")
            self._generating = True
            llama = self._llama
        try:
            return self._generate(llama, messages, options, on_delta, cancel)
        finally:
            with self._state:
                self._generating = False
                if self._closed:
                    self._release()

    def close(self) -> None:
        with self._state:
            self._closed = True
            if not self._generating:
                self._release()

    def _release(self) -> None:
        if self._llama is not None:
            self._engine._give_back(self._llama)
            self._llama = None

    def _generate(
        self,
        llama: llama_cpp.Llama,
        messages: Sequence[Message],
        options: Options,
        on_delta: OnDelta,
        cancel: threading.Event,
    ) -> Completion:
        tools = self._engine.tool_template
        if options.tools and tools is not None:
            completion = generate_with_tools(llama, tools, messages, options, on_delta, cancel)
            if completion.finish in (Finish.STOP, Finish.LENGTH):
                self._prefill(llama, [*messages, Message("assistant", completion.text)], options)
            return completion
        parts: list[str] = []
        prompt_tokens = 0
        finish = Finish.STOP
        chunks: Iterator[dict[str, Any]] = iter(())
        try:
            chunks = cast(
                Iterator[dict[str, Any]],
                llama.create_chat_completion(
                    messages=cast(Any, api_messages(messages, parsed_arguments=True)),
                    temperature=options.temperature,
                    max_tokens=options.max_tokens,
                    stream=True,
                ),
            )
            for chunk in chunks:
                if cancel.is_set():
                    finish = Finish.CANCELLED
                    break
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    if not parts:
                        # The prompt is evaluated and the first token not yet: this is the prompt length.
                        prompt_tokens = llama.n_tokens
                    parts.append(text)
                    on_delta(text)
                if choice.get("finish_reason") == "length":
                    finish = Finish.LENGTH
        except ValueError as exc:  # "Requested tokens (...) exceed context window of ..."
            raise InvalidArgument(f"the conversation does not fit the model's context: {exc}") from exc
        finally:
            # Closing the generator stops llama.cpp at once: no further token is evaluated.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not parts:
            prompt_tokens = llama.n_tokens
        if finish is not Finish.CANCELLED:
            self._prefill(llama, [*messages, Message("assistant", "".join(parts))], options)
        return Completion("".join(parts), finish, prompt_tokens, len(parts), LocalEngine.name)

    def _prefill(self, llama: llama_cpp.Llama, messages: Sequence[Message], options: Options) -> None:
        """Evaluate what the next prompt will add before the next user's words (the end of
        this reply, the start of a user message) now, while the reply is being spoken."""
        formatter = self._engine._formatter
        if formatter is None:
            return
        # Render the conversation with a marker as the next user message, and cut there.
        marker = "\x00"
        dicts = api_messages(messages, parsed_arguments=True)
        # The tools are part of the system message, as in the prompt of the next turn.
        tools = api_tools(options.tools) if options.tools and self._engine.tool_template else None
        ended = [*dicts, {"role": "user", "content": marker}]
        text = formatter(messages=cast(Any, ended), tools=cast(Any, tools)).prompt
        tokens = llama.tokenize(text[: text.index(marker)].encode(), add_bos=False, special=True)
        cached = llama.n_tokens
        # Only ever extend the cache: a template that renders the past differently is left alone.
        if len(tokens) > cached and list(llama.input_ids[:cached]) == tokens[:cached]:
            llama.eval(tokens[cached:])


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return llama.detokenize([token], special=True).decode("utf-8", errors="ignore") if token >= 0 else ""
