"""``python -m bench.tools.run --slow``: what was heard while a tool worked, and after."""

from __future__ import annotations

from bench.tools.run import moments
from harness.tap import STREAMING_CHAT, STREAMING_SYNTHESIZE, LlmTap, Message, SttTap, Taps, TtsTap
from voice.llm.v1 import llm_pb2
from voice.tts.v1 import tts_pb2


def audio(text: str, samples: int, turn_id: int = 7) -> bytes:
    chunk = tts_pb2.SynthesizedAudio(audio_content=bytes(2 * samples), text=text, turn_id=turn_id)
    return tts_pb2.StreamingSynthesizeResponse(audio=chunk).SerializeToString()


def test_the_filler_is_what_was_delivered_before_the_result_and_the_answer_what_came_after() -> None:
    taps = Taps(SttTap(""), LlmTap(""), TtsTap(""))
    call = llm_pb2.StreamingChatResponse(tool_call=llm_pb2.ToolCallDelta(name="order_status", turn_id=7))
    end = llm_pb2.TurnEnd(
        turn_id=7, finish_reason=llm_pb2.FINISH_REASON_TOOL_CALLS, tool_calls=[llm_pb2.ToolCall(id="1")]
    )
    result = llm_pb2.StreamingChatRequest(tool_result=llm_pb2.ToolResult(call_id="1", output="{}"))
    taps.llm.messages += [
        Message(0, STREAMING_CHAT, False, 9.0, call.SerializeToString()),
        Message(
            0, STREAMING_CHAT, False, 10.0, llm_pb2.StreamingChatResponse(turn_end=end).SerializeToString()
        ),
        Message(0, STREAMING_CHAT, True, 12.0, result.SerializeToString()),
    ]
    taps.tts.messages += [
        Message(0, STREAMING_SYNTHESIZE, False, 11.0, audio("One moment.", 800)),
        Message(0, STREAMING_SYNTHESIZE, False, 11.1, audio("", 800)),
        Message(0, STREAMING_SYNTHESIZE, False, 11.5, audio("Another turn.", 800, turn_id=8)),
        Message(0, STREAMING_SYNTHESIZE, False, 13.0, audio("It shipped.", 800)),
        Message(0, STREAMING_SYNTHESIZE, False, 13.2, audio("It arrives Thursday.", 800)),
    ]
    assert moments(taps, 7) == (10.0, 11.0, 13.0)


def test_with_no_result_nothing_counts_as_a_filler_or_an_answer() -> None:
    taps = Taps(SttTap(""), LlmTap(""), TtsTap(""))
    taps.tts.messages.append(Message(0, STREAMING_SYNTHESIZE, False, 11.0, audio("Paris.", 800)))
    assert moments(taps, 7) == (None, None, None)
