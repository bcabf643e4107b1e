"""G.711 μ-law ↔ PCM16 little-endian, by lookup tables built once at import."""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["ULAW_SILENCE", "pcm16_to_ulaw", "samples_to_ulaw", "ulaw_to_pcm16"]

ULAW_SILENCE: Final = 0xFF
"""The μ-law code that decodes to 0 (the positive zero; 0x7F is the negative one)."""

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635


def _build_decode_table() -> NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    table = np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)
    table.flags.writeable = False
    return table


def _build_encode_table() -> NDArray[np.uint8]:
    # Indexed by the uint16 view of a sample, so entry i encodes int16(i).
    sample = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(sample < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(sample), _ULAW_CLIP) + _ULAW_BIAS
    # The segment is how far the biased value's top bit sits above bit 7 (frexp is exact).
    exponent = np.frexp(magnitude)[1].astype(np.int32) - 8
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    table: NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    table.flags.writeable = False
    return table


_ULAW_TO_PCM: Final = _build_decode_table()
# The same table as two byte-to-byte tables, low and high byte of each little-endian
# sample: bytes.translate decodes a 20 ms frame with them in a fraction of numpy's
# per-call cost.
_ULAW_TO_PCM_BYTES: Final = _ULAW_TO_PCM.astype("<i2").view(np.uint8)
_ULAW_TO_PCM_LOW: Final = _ULAW_TO_PCM_BYTES[0::2].tobytes()
_ULAW_TO_PCM_HIGH: Final = _ULAW_TO_PCM_BYTES[1::2].tobytes()
_PCM_TO_ULAW: Final = _build_encode_table()


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """Decode G.711 μ-law bytes to PCM16 little-endian bytes (two bytes per input byte)."""
    pcm = bytearray(2 * len(ulaw))
    pcm[0::2] = ulaw.translate(_ULAW_TO_PCM_LOW)
    pcm[1::2] = ulaw.translate(_ULAW_TO_PCM_HIGH)
    return bytes(pcm)


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode PCM16 little-endian bytes to G.711 μ-law; a trailing odd byte is ignored."""
    samples = np.frombuffer(pcm, dtype="<u2", count=len(pcm) // 2)
    encoded: NDArray[np.uint8] = _PCM_TO_ULAW[samples]
    return encoded.tobytes()


def samples_to_ulaw(samples: NDArray[np.int16]) -> NDArray[np.uint8]:
    """Encode int16 samples to μ-law codes, as an array (no bytes copy)."""
    return _PCM_TO_ULAW.take(samples.view(np.uint16))
