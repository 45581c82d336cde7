"""OpenAI-compatible ``/v1/audio/transcriptions`` and ``/v1/audio/speech`` over the STT and TTS services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from services.gateway.channels import Backends
from services.gateway.errors import BadRequest
from services.gateway.http_body import json_body
from services.gateway.wav import read_wav, streaming_header
from voice.stt.v1 import stt_pb2
from voice.tts.v1 import tts_pb2

_TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")
_SPEECH_FORMATS = ("wav", "pcm")
# OpenAI's "pcm" is 24 kHz 16-bit mono; "wav" keeps the voice's own rate.
_PCM_RATE_HZ = 24000
_CHUNK_S = 0.1
# OpenAI's own voice names, which many tools send by default: they get the default voice.
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"}
)


def router(backends: Backends) -> APIRouter:
    api = APIRouter()

    @api.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("`file` is missing: send the audio as a multipart form field named file", "file")
        response_format = str(form.get("response_format") or "json")
        if response_format not in _TRANSCRIPT_FORMATS:
            raise BadRequest(
                f"response_format {response_format!r} is not supported; "
                f"use one of {', '.join(_TRANSCRIPT_FORMATS)}",
                "response_format",
            )
        data = await upload.read()
        if not data:
            raise BadRequest("`file` is empty", "file")
        pcm, rate = read_wav(data)
        verbose = response_format == "verbose_json"
        config = stt_pb2.RecognitionConfig(
            sample_rate_hz=rate,
            language_code=str(form.get("language") or ""),
            enable_word_time_offsets=verbose,
        )
        finals = await _recognize(backends, config, pcm)
        text = " ".join(r.transcript.strip() for r in finals if r.transcript.strip())
        if response_format == "text":
            return PlainTextResponse(text)
        if not verbose:
            return JSONResponse({"text": text})
        language = next((r.language_code for r in finals if r.language_code), config.language_code or "en")
        return JSONResponse(_verbose(text, finals, language, len(pcm) / 2 / rate))

    @api.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        body = await json_body(request)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("`input` is empty: give the text to speak", "input")
        response_format = str(body.get("response_format") or "wav")
        if response_format not in _SPEECH_FORMATS:
            raise BadRequest(
                f"response_format {response_format!r} is not supported; "
                f"use one of {', '.join(_SPEECH_FORMATS)}",
                "response_format",
            )
        voice = str(body.get("voice") or "")
        speed = body.get("speed") or 0.0
        if not isinstance(speed, int | float):
            raise BadRequest("`speed` must be a number", "speed")
        config = tts_pb2.SynthesisConfig(
            voice="" if voice in OPENAI_VOICES else voice,
            speaking_rate=float(speed),
            sample_rate_hz=_PCM_RATE_HZ if response_format == "pcm" else 0,
        )
        call = backends.tts.StreamingSynthesize()
        try:
            await call.write(tts_pb2.StreamingSynthesizeRequest(config=config))
            await call.write(tts_pb2.StreamingSynthesizeRequest(text=text))
            await call.done_writing()
            # The first reply comes before the response starts, so a refused request is a 4xx.
            first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF or first.WhichOneof("response") != "audio":
            call.cancel()
            raise BadRequest("`input` has nothing to speak", "input")
        media = "audio/wav" if response_format == "wav" else "audio/pcm"
        return StreamingResponse(_audio(call, first, response_format), media_type=media)

    return api


async def _recognize(
    backends: Backends, config: stt_pb2.RecognitionConfig, pcm: bytes
) -> list[stt_pb2.SpeechRecognitionResult]:
    step = int(config.sample_rate_hz * _CHUNK_S) * 2
    Req = stt_pb2.StreamingRecognizeRequest

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield Req(config=config)
        for start in range(0, len(pcm), step):
            yield Req(audio_content=pcm[start : start + step])
        yield Req(end_of_utterance=stt_pb2.EndOfUtterance())

    finals: list[stt_pb2.SpeechRecognitionResult] = []
    async for response in backends.stt.StreamingRecognize(requests()):
        finals.extend(r for r in response.results if r.is_final)
    return finals


def _verbose(
    text: str, finals: list[stt_pb2.SpeechRecognitionResult], language: str, duration_s: float
) -> dict[str, Any]:
    segments = [
        {
            "id": index,
            "seek": 0,
            "start": r.start_ms / 1000,
            "end": r.end_ms / 1000,
            "text": r.transcript.strip(),
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": 0.0,
            "compression_ratio": 0.0,
            "no_speech_prob": 0.0,
        }
        for index, r in enumerate(finals)
    ]
    words = [
        {"word": w.word.strip(), "start": w.start_ms / 1000, "end": w.end_ms / 1000}
        for r in finals
        for w in r.words
    ]
    return {
        "task": "transcribe",
        "language": language,
        "duration": round(duration_s, 3),
        "text": text,
        "segments": segments,
        "words": words,
    }


async def _audio(
    call: grpc.aio.StreamStreamCall, first: tts_pb2.StreamingSynthesizeResponse, response_format: str
) -> AsyncIterator[bytes]:
    try:
        if response_format == "wav":
            yield streaming_header(first.audio.sample_rate_hz)
        yield first.audio.audio_content
        # read(), not `async for`: grpc.aio does not allow both styles on one call.
        while (response := await call.read()) is not grpc.aio.EOF:
            if response.WhichOneof("response") == "audio":
                yield response.audio.audio_content
    finally:
        call.cancel()
