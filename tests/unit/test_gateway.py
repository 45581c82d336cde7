"""Gateway logic without servers: WAV in and out, settings, error mapping."""

from __future__ import annotations

import io
import wave

import grpc
import numpy as np
import pytest

from services.gateway.config import GatewaySettings
from services.gateway.errors import BadRequest, openai_status_error, status_code
from services.gateway.wav import read_wav, streaming_header


def wav(samples: np.ndarray, rate: int, width: int, channels: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def test_a_streamed_wav_reads_back_with_any_wav_reader() -> None:
    pcm = (np.sin(np.arange(2205) / 10) * 8000).astype("<i2").tobytes()
    with wave.open(io.BytesIO(streaming_header(22050) + pcm)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)
        assert w.readframes(w.getnframes()) == pcm


def test_stereo_and_8_bit_uploads_become_16_bit_mono() -> None:
    left = (np.sin(np.arange(800) / 5) * 20000).astype("<i2")
    stereo = np.stack([left, left], axis=1)
    pcm, rate = read_wav(wav(stereo, 8000, 2, 2))
    assert rate == 8000 and np.array_equal(np.frombuffer(pcm, "<i2"), left)
    unsigned = np.array([0, 128, 255], dtype=np.uint8)
    pcm, _ = read_wav(wav(unsigned, 16000, 1, 1))
    assert np.frombuffer(pcm, "<i2").tolist() == [-32768, 0, 32512]
    # 24-bit: 0x123456 and -2 keep their top 16 bits.
    pcm, _ = read_wav(wav(np.frombuffer(bytes([0x56, 0x34, 0x12, 0xFE, 0xFF, 0xFF]), np.uint8), 16000, 3, 1))
    assert np.frombuffer(pcm, "<i2").tolist() == [0x1234, -1]


def test_a_file_that_is_not_wav_is_a_bad_request_about_the_file() -> None:
    with pytest.raises(BadRequest, match="not a PCM WAV file") as caught:
        read_wav(b"ID3\x04 an mp3")
    assert caught.value.param == "file"


def test_addresses_come_from_the_services_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_ADDRESS", "10.0.0.1:50051")
    monkeypatch.setenv("GATEWAY_TTS_ADDRESS", "10.0.0.3:50053")
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "9000")
    settings = GatewaySettings()
    assert (settings.stt_address, settings.llm_address, settings.tts_address) == (
        "10.0.0.1:50051",
        "llm:50052",
        "10.0.0.3:50053",
    )
    assert (settings.http_port, settings.wyoming_stt_port, settings.wyoming_tts_port) == (9000, 10300, 10200)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
    ],
)
def test_grpc_statuses_map_to_http(code: grpc.StatusCode, status: int) -> None:
    http, body = openai_status_error(status_code(code.value[0]), "the reason")
    assert http == status
    error = body["error"]
    assert isinstance(error, dict)
    assert (error["message"], error["code"]) == ("the reason", code.name.lower())
