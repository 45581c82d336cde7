"""Words said by the speech synthesis service and audio heard by the speech recognition service,
for a question no recording asks."""

from __future__ import annotations

from voice.stt.v1 import stt_pb2, stt_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc


async def said(tts: tts_pb2_grpc.TtsServiceStub, text: str, rate_hz: int = 16000) -> bytes:
    """``text`` in the service's voice, as PCM at ``rate_hz``."""
    config = tts_pb2.SynthesisConfig(sample_rate_hz=rate_hz)
    response = await tts.Synthesize(tts_pb2.SynthesizeRequest(config=config, text=text))
    return bytes(response.audio_content)


async def heard(stt: stt_pb2_grpc.SttServiceStub, pcm: bytes, rate_hz: int = 16000) -> str:
    """What the service hears in ``pcm`` (PCM at ``rate_hz``), its results joined."""
    config = stt_pb2.RecognitionConfig(sample_rate_hz=rate_hz, language_code="en")
    response = await stt.Recognize(stt_pb2.RecognizeRequest(config=config, audio_content=pcm))
    return " ".join(r.transcript.strip() for r in response.results)
