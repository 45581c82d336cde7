"""Wyoming ``info`` replies: the STT service's model and the TTS service's voices."""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker

from services.gateway.channels import Backends
from voice.stt.v1 import stt_pb2
from voice.tts.v1 import tts_pb2

# The project has no home page of its own to point to.
_ATTRIBUTION = Attribution(name="voice-agent", url="")
VERSION = "0.1.0"


async def stt_info(backends: Backends, streaming: bool) -> Info:
    info = await backends.stt.GetInfo(stt_pb2.GetInfoRequest(), timeout=backends.info_timeout_s)
    model = AsrModel(
        name=info.model,
        attribution=Attribution(name="OpenAI Whisper", url="https://github.com/openai/whisper"),
        installed=True,
        description=f"Whisper {info.model} ({info.device}, {info.compute_type})",
        version=None,
        languages=list(info.languages),
    )
    program = AsrProgram(
        name="voice-agent-stt",
        attribution=_ATTRIBUTION,
        installed=True,
        description="voice-agent speech-to-text (faster-whisper over gRPC)",
        version=VERSION,
        models=[model],
        supports_transcript_streaming=streaming,
    )
    return Info(asr=[program])


async def tts_info(backends: Backends) -> Info:
    reply = await backends.tts.ListVoices(tts_pb2.ListVoicesRequest(), timeout=backends.info_timeout_s)
    voices = [
        TtsVoice(
            name=voice.name,
            attribution=Attribution(name=voice.engine, url=""),
            installed=True,
            description=f"{voice.name} ({voice.engine}, {voice.native_sample_rate_hz} Hz)",
            version=None,
            languages=list(voice.language_codes),
            speakers=[TtsVoiceSpeaker(name=s) for s in voice.speakers] or None,
        )
        for voice in reply.voices
    ]
    program = TtsProgram(
        name="voice-agent-tts",
        attribution=_ATTRIBUTION,
        installed=True,
        description="voice-agent speech synthesis over gRPC",
        version=VERSION,
        voices=voices,
        supports_synthesize_streaming=True,
    )
    return Info(tts=[program])
