"""G.711 μ-law, the telephone network's 8-bit audio: to and from LINEAR16."""

from __future__ import annotations

import numpy as np

_BIAS = 0x84
_CLIP = 32635


def _decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 7, u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype("<i2")


def _encode_table() -> np.ndarray:
    x = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(x < 0, 0x80, 0)
    # On 14 bits, as G.711 defines it: a negative sample rounds away from zero.
    magnitude = np.minimum(np.abs(x >> 2) << 2, _CLIP) + _BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    encoded: np.ndarray = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return encoded


_DECODE = _decode_table()
_ENCODE = _encode_table()


def decode(data: bytes) -> bytes:
    """μ-law bytes to LINEAR16 (signed 16-bit little-endian), one sample a byte."""
    return bytes(_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes())


def encode(pcm: bytes) -> bytes:
    """LINEAR16 to μ-law bytes."""
    samples = np.frombuffer(pcm[: len(pcm) & ~1], dtype="<i2").astype(np.int32)
    return bytes(_ENCODE[samples + 32768].tobytes())
