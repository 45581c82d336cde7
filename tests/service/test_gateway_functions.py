"""Function calling through the gateway's doors, with the embedded Qwen2.5-Coder-1.5B (the model
that calls tools well) behind a tap: OpenAI's Realtime API (the openai SDK's realtime client, and
a raw WebSocket with the beta event names) and ``/v1/chat/completions`` (the openai SDK).

What the chat service was asked and answered (the calls it made, the results and instructions it
received) comes from the tap (harness/tap.py). The spoken question is synthesized by the TTS
service (no recording here asks about the weather); the spoken answer is transcribed back by the
STT service.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
import websockets

from conversation.date_time import NAME as DATE_TIME
from harness.gateway_stack import Stack, gateway_stack
from harness.speech import normalize
from harness.stt_client import stream
from harness.tap import STREAMING_CHAT, LlmTap
from services.gateway.realtime import API_RATE_HZ
from services.gateway.server import running_gateway
from tests.service.test_gateway_realtime import Heard, _speak
from voice.llm.v1 import llm_pb2
from voice.stt.v1 import stt_pb2

CAPABLE_MODEL = "qwen2.5-coder-1.5b"
CITY: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "The city's name"}},
    "required": ["city"],
}
QUESTION = "What's the weather in Paris right now?"
OUTPUT = json.dumps({"temperature_c": 17, "sky": "cloudy"})
INSTRUCTIONS = (
    "You are a helpful voice assistant. Answer in one short sentence. Use the tools when they help."
)
REALTIME_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather now in a city",
    "parameters": CITY,
}
CHAT_TOOL: Any = {"type": "function", "function": {k: v for k, v in REALTIME_TOOL.items() if k != "type"}}
TIMEOUT_S = 240
_CHAT = f"/{llm_pb2.DESCRIPTOR.services_by_name['LlmService'].full_name}/Chat"


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with gateway_stack(llm=True, embedded_model=CAPABLE_MODEL, tap_llm=True) as stack:
        yield stack


@pytest.fixture
def tap(stack: Stack) -> LlmTap:
    assert stack.llm_tap is not None
    return stack.llm_tap


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{stack.ports.http}/v1",
        websocket_base_url=f"ws://127.0.0.1:{stack.ports.http}/v1",
        api_key="unused",
        max_retries=0,
    ) as client:
        yield client


@pytest.fixture
async def talk(client: openai.AsyncOpenAI) -> AsyncIterator[tuple[Any, Heard]]:
    async with client.realtime.connect(model="voice-agent") as conn:
        heard = Heard()

        async def listen() -> None:
            async for event in conn:
                heard.add(event.to_dict())

        listening = asyncio.create_task(listen())
        yield conn, heard
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await listening


def _uses_output(text: str) -> bool:
    words = normalize(text)
    return "17" in words or "seventeen" in words or "cloud" in words


def _calls_made(tap: LlmTap) -> list[llm_pb2.ToolCall]:
    """Every call the chat service made on a stream, in order."""
    ends = [
        r.turn_end
        for r in tap.delivered(STREAMING_CHAT, llm_pb2.StreamingChatResponse)
        if r.HasField("turn_end")
    ]
    return [
        call
        for end in ends
        if end.finish_reason == llm_pb2.FINISH_REASON_TOOL_CALLS
        for call in end.tool_calls
    ]


def _results_received(tap: LlmTap) -> list[llm_pb2.ToolResult]:
    return [r.tool_result for r in tap.requests() if r.HasField("tool_result")]


# -- Realtime -------------------------------------------------------------------------------------


async def test_a_spoken_request_calls_the_clients_function_and_the_spoken_answer_uses_its_output(
    talk: tuple[Any, Heard], client: openai.AsyncOpenAI, stack: Stack, tap: LlmTap
) -> None:
    conn, heard = talk
    detection = {"type": "server_vad", "silence_duration_ms": 600}
    await conn.session.update(
        session={
            "type": "realtime",
            "instructions": INSTRUCTIONS,
            "tools": [REALTIME_TOOL],
            "tool_choice": "auto",
            "audio": {"input": {"turn_detection": detection}},
        }
    )
    updated = (await heard.next("session.updated", 0))["session"]
    assert [t["name"] for t in updated["tools"]] == ["get_weather"] and updated["tool_choice"] == "auto"
    speech = await client.audio.speech.create(
        model="tts-1", voice="alloy", input=QUESTION, response_format="pcm"
    )
    speaking = asyncio.create_task(_speak(conn, speech.content, 1500))
    done = (await heard.next("response.done", 0, TIMEOUT_S))["response"]
    speaking.cancel()
    said = await heard.next("conversation.item.input_audio_transcription.completed", 0)
    # Whisper tiny.en has written "Paris" as "terrace" in one run: the call is checked against what
    # the STT service heard, the city named in it.
    assert "weather" in normalize(said["transcript"]), said

    # The call, as the API sends it: an item of the response, its arguments, the response done with it.
    calls = [o for o in done["output"] if o["type"] == "function_call"]
    assert len(calls) == 1, done
    [item] = calls
    assert done["status"] == "completed" and item["name"] == "get_weather" and item["status"] == "completed"
    city = normalize(json.loads(item["arguments"])["city"]).split()
    assert city and city[0] in normalize(said["transcript"]).split(), (item, said)
    of_call = [
        e for e in heard.events if e.get("item_id") == item["id"] or e.get("item", {}).get("id") == item["id"]
    ]
    kinds = [e["type"] for e in of_call]
    assert kinds == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ], kinds
    assert of_call[0]["item"]["type"] == "function_call" and of_call[0]["item"]["call_id"] == item["call_id"]
    assert (
        "".join(e["delta"] for e in heard.of("response.function_call_arguments.delta")) == item["arguments"]
    )
    assert of_call[2]["arguments"] == item["arguments"] and of_call[2]["call_id"] == item["call_id"]
    # The chat service's account: it made that call.
    [made] = [c for c in _calls_made(tap) if c.id == item["call_id"]]
    assert made.name == "get_weather" and json.loads(made.arguments_json) == json.loads(item["arguments"])

    mark = len(heard.events)
    output = {"type": "function_call_output", "call_id": item["call_id"], "output": OUTPUT}
    await conn.conversation.item.create(item=output)
    added = await heard.next("conversation.item.added", mark)
    assert added["item"]["call_id"] == item["call_id"] and added["previous_item_id"] == item["id"]
    await conn.response.create()
    answer = (await heard.next("response.done", mark, TIMEOUT_S))["response"]
    assert answer["status"] == "completed" and answer["id"] != done["id"], answer
    # The result reached the chat service, and the answer heard holds it.
    assert [(r.call_id, r.output) for r in _results_received(tap)][-1:] == [(item["call_id"], OUTPUT)]
    audio = b"".join(
        base64.b64decode(e["delta"])
        for e in heard.of("response.output_audio.delta")
        if e["response_id"] == answer["id"]
    )
    heard_back = await stream(stack.stt, stt_pb2.RecognitionConfig(sample_rate_hz=API_RATE_HZ), [audio])
    transcript = answer["output"][0]["content"][0]["transcript"]
    assert _uses_output(heard_back.text), (heard_back.text, transcript)


async def test_instructions_and_tools_changed_mid_conversation_apply_from_the_next_reply(
    talk: tuple[Any, Heard], tap: LlmTap
) -> None:
    conn, heard = talk
    await conn.session.update(session={"type": "realtime", "instructions": INSTRUCTIONS})
    await heard.next("session.updated", 0)

    async def ask(text: str) -> str:
        mark = len(heard.events)
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        await conn.conversation.item.create(item=item)
        await conn.response.create()
        done = (await heard.next("response.done", mark, TIMEOUT_S))["response"]
        assert done["status"] == "completed", done
        return str(done["output"][0]["content"][0]["transcript"])

    await ask("Say hello.")
    renamed = "Your name is Zorblax. " + INSTRUCTIONS
    mark = len(heard.events)
    await conn.session.update(session={"type": "realtime", "instructions": renamed, "tools": [REALTIME_TOOL]})
    updated = (await heard.next("session.updated", mark))["session"]
    assert updated["instructions"] == renamed and updated["tools"][0]["name"] == "get_weather"
    reply = await ask("What is your name?")
    assert "zorblax" in reply.lower(), reply

    # The chat service's account: one stream, the update between the two turns.
    asked = [r for r in tap.requests() if r.WhichOneof("request") in ("user_turn", "update")]
    kinds = [r.WhichOneof("request") for r in asked[-3:]]
    assert kinds == ["user_turn", "update", "user_turn"], asked[-3:]
    update = asked[-2].update
    assert update.system_prompt == renamed and [t.name for t in update.tools.tools] == ["get_weather"]


async def test_beta_clients_get_the_call_and_the_answer_under_the_beta_names(
    stack: Stack, tap: LlmTap
) -> None:
    url = f"ws://127.0.0.1:{stack.ports.http}/v1/realtime?model=voice-agent"
    async with websockets.connect(url, additional_headers={"OpenAI-Beta": "realtime=v1"}) as ws:

        async def until(kind: str) -> list[dict[str, Any]]:
            events: list[dict[str, Any]] = []
            async with asyncio.timeout(TIMEOUT_S):
                while not events or events[-1]["type"] != kind:
                    events.append(json.loads(await ws.recv()))
            return events

        await until("session.created")
        session = {"instructions": INSTRUCTIONS, "tools": [REALTIME_TOOL], "tool_choice": "auto"}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await until("session.updated")
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        events = await until("response.done")
        kinds = [e["type"] for e in events]
        assert kinds[0] == "conversation.item.created", kinds
        [call] = [o for o in events[-1]["response"]["output"] if o["type"] == "function_call"]
        assert (
            call["name"] == "get_weather" and json.loads(call["arguments"])["city"].strip().lower() == "paris"
        )
        assert kinds.index("response.function_call_arguments.delta") < kinds.index(
            "response.function_call_arguments.done"
        )
        assert call["call_id"] in [c.id for c in _calls_made(tap)]

        output = {"type": "function_call_output", "call_id": call["call_id"], "output": OUTPUT}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": output}))
        assert (await until("conversation.item.created"))[-1]["item"]["type"] == "function_call_output"
        await ws.send(json.dumps({"type": "response.create"}))
        events = await until("response.done")
    kinds = [e["type"] for e in events]
    assert "response.audio.delta" in kinds and "response.audio_transcript.done" in kinds, kinds
    assert not [k for k in kinds if "output_audio" in k]
    transcript = events[-1]["response"]["output"][0]["content"][0]["transcript"]
    assert events[-1]["response"]["status"] == "completed" and _uses_output(transcript), transcript
    assert _results_received(tap)[-1].output == OUTPUT


async def test_bad_functions_and_outputs_get_errors_that_say_what_to_fix(stack: Stack) -> None:
    url = f"ws://127.0.0.1:{stack.ports.http}/v1/realtime?model=voice-agent"
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        bad = {**REALTIME_TOOL, "parameters": {"type": "string"}}
        await ws.send(json.dumps({"type": "session.update", "session": {"tools": [bad]}}))
        error = json.loads(await ws.recv())["error"]
        assert error["code"] == "invalid_value" and error["param"] == "session.tools[0].parameters", error
        assert "type 'object'" in error["message"], error
        output = {"type": "function_call_output", "call_id": "call_nobody", "output": "{}"}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": output}))
        error = json.loads(await ws.recv())["error"]
        assert error["code"] == "unknown_call_id" and "call_nobody" in error["message"], error


async def test_the_gateways_own_tools_are_offered_beside_the_clients_functions(
    stack: Stack, tap: LlmTap
) -> None:
    seen = len(tap.requests())
    clock = stack.settings.model_copy(update={"time_zone": "Europe/Paris"})
    async with running_gateway(clock) as ports:
        url = f"ws://127.0.0.1:{ports.http}/v1/realtime?model=voice-agent"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            await ws.send(json.dumps({"type": "session.update", "session": {"tools": [REALTIME_TOOL]}}))
            assert json.loads(await ws.recv())["type"] == "session.updated"
            item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]}
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))  # the talk begins
            async with asyncio.timeout(60):
                while not (configs := [r.config for r in tap.requests()[seen:] if r.HasField("config")]):
                    await asyncio.sleep(0.1)
    # The chat service's account: the stream's config offered both.
    assert sorted(t.name for t in configs[0].tools.tools) == [DATE_TIME, "get_weather"], configs[0]


# -- /v1/chat/completions -------------------------------------------------------------------------


async def test_chat_completions_call_a_function_and_answer_with_its_result(
    client: openai.AsyncOpenAI, tap: LlmTap
) -> None:
    messages: list[Any] = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": QUESTION}]
    reply = await client.chat.completions.create(
        model="local", messages=messages, tools=[CHAT_TOOL], temperature=0, max_tokens=64
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls, choice
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"].strip().lower() == "paris"
    # The chat service's account: the tools it was offered, and the call it answered with.
    made = tap.delivered(_CHAT, llm_pb2.ChatResponse)[-1].tool_calls
    assert [(c.id, c.arguments_json) for c in made] == [(call.id, call.function.arguments)]
    offered = tap.received(_CHAT, llm_pb2.ChatRequest)[-1].config.tools
    assert [t.name for t in offered.tools] == ["get_weather"] and json.loads(
        offered.tools[0].parameters_json
    ) == CITY

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": OUTPUT},
    ]
    answer = await client.chat.completions.create(
        model="local", messages=messages, tools=[CHAT_TOOL], temperature=0, max_tokens=64
    )
    assert answer.choices[0].finish_reason == "stop" and _uses_output(
        answer.choices[0].message.content or ""
    ), answer
    sent = tap.received(_CHAT, llm_pb2.ChatRequest)[-1].messages[-1]
    assert (sent.role, sent.tool_call_id, sent.content) == (llm_pb2.ROLE_TOOL, call.id, OUTPUT)


async def test_chat_completions_stream_the_call_in_pieces_and_then_the_answer(
    client: openai.AsyncOpenAI, tap: LlmTap
) -> None:
    messages: list[Any] = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": QUESTION}]
    pieces: list[Any] = []
    finishes: list[str | None] = []
    async for chunk in await client.chat.completions.create(
        model="local",
        messages=messages,
        tools=[CHAT_TOOL],
        tool_choice="auto",
        temperature=0,
        max_tokens=64,
        stream=True,
    ):
        for choice in chunk.choices:
            pieces += choice.delta.tool_calls or []
            finishes.append(choice.finish_reason)
    assert finishes[-1] == "tool_calls" and not any(finishes[:-1]), finishes
    assert (
        len(pieces) > 1 and pieces[0].id and pieces[0].function and pieces[0].function.name == "get_weather"
    )
    arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert json.loads(arguments)["city"].strip().lower() == "paris", arguments
    assert [(c.id, c.arguments_json) for c in _calls_made(tap)][-1] == (pieces[0].id, arguments)

    call = {
        "id": pieces[0].id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": pieces[0].id, "content": OUTPUT},
    ]
    texts: list[str] = []
    async for chunk in await client.chat.completions.create(
        model="local", messages=messages, tools=[CHAT_TOOL], temperature=0, max_tokens=64, stream=True
    ):
        texts += [c.delta.content for c in chunk.choices if c.delta.content]
    assert _uses_output("".join(texts)), texts
    # The answer streams as the model writes it, on a stream the result went on.
    assert len(texts) > 1, texts
    result = _results_received(tap)[-1]
    assert (result.call_id, result.output) == (pieces[0].id, OUTPUT), result


async def test_a_bad_tool_schema_is_a_400_that_says_what_is_wrong(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    asked: list[Any] = [{"role": "user", "content": QUESTION}]
    not_an_object: Any = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "string"}},
    }
    with pytest.raises(
        openai.BadRequestError, match=r"tools\[0\]\.function\.parameters must be a JSON Schema object"
    ):
        await client.chat.completions.create(model="local", messages=asked, tools=[not_an_object])
    # A schema the chat service cannot read: its reason, plain or streamed.
    misspelt = {**CITY, "properties": {"city": {"type": "strnig"}}}
    bad: Any = {"type": "function", "function": {"name": "get_weather", "parameters": misspelt}}
    for streamed in (False, True):
        with pytest.raises(
            openai.BadRequestError, match=r"get_weather.*schema is invalid at properties/city/type"
        ):
            await client.chat.completions.create(model="local", messages=asked, tools=[bad], stream=streamed)
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports.http}", timeout=60) as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": "local", "messages": asked, "tools": [bad], "stream": True}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "strnig" in error["message"], error
