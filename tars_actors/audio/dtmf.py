"""Keypad tones (DTMF, ITU-T Q.23) in μ-law 8 kHz: made for keys TARS presses on a call it
placed (a phone menu), and heard back by a Goertzel detector (the softphone's, in tests).

A bidirectional Media Stream has no message that sends a key, so keys go in-band: each is a
pair of sines, a low (row) and a high (column) frequency, for 100 ms, then 100 ms of silence
(Q.24 asks for at least 40 ms of each). The levels, -9 and -7 dBm0 (the high one 2 dB
stronger, as telephones send them), sit well inside what exchanges and menus detect.
"""

from __future__ import annotations

import re
from typing import Final

import numpy as np
from numpy.typing import NDArray

from tars_actors.audio.g711 import samples_to_ulaw, ulaw_to_pcm16

__all__ = ["KEYS_PATTERN", "DtmfDetector", "tones"]

RATE: Final = 8000
_ROWS: Final = (697.0, 770.0, 852.0, 941.0)
_COLUMNS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_LAYOUT: Final = ("123A", "456B", "789C", "*0#D")
_FREQUENCIES: Final = {
    key: (_ROWS[row], _COLUMNS[column])
    for row, keys in enumerate(_LAYOUT)
    for column, key in enumerate(keys)
}
#: Keys a caller of ``tones`` may ask for: digits, * and #, and ``w`` for a half-second pause.
KEYS_PATTERN: Final = re.compile(r"[0-9*#w]{1,32}")

TONE_SECONDS: Final = 0.1
GAP_SECONDS: Final = 0.1
PAUSE_SECONDS: Final = 0.5
# A μ-law full-scale sine is +3.17 dBm0.
_LOW_AMPLITUDE: Final = 32767 * 10 ** ((-9.0 - 3.17) / 20)
_HIGH_AMPLITUDE: Final = 32767 * 10 ** ((-7.0 - 3.17) / 20)


def tones(keys: str) -> bytes:
    """μ-law 8 kHz audio of ``keys`` (``KEYS_PATTERN``): each a tone then a gap; ``w`` waits."""
    if not KEYS_PATTERN.fullmatch(keys):
        raise ValueError(f"keys must match {KEYS_PATTERN.pattern}, got {keys!r}")
    tone_time = np.arange(round(TONE_SECONDS * RATE)) / RATE
    gap = np.zeros(round(GAP_SECONDS * RATE))
    pause = np.zeros(round(PAUSE_SECONDS * RATE))
    parts: list[NDArray[np.float64]] = []
    for key in keys:
        if key == "w":
            parts.append(pause)
            continue
        low, high = _FREQUENCIES[key]
        parts.append(
            _LOW_AMPLITUDE * np.sin(2 * np.pi * low * tone_time)
            + _HIGH_AMPLITUDE * np.sin(2 * np.pi * high * tone_time)
        )
        parts.append(gap)
    samples = np.concatenate(parts).round().astype(np.int16)
    return bytes(samples_to_ulaw(samples))


class DtmfDetector:
    """Keys in μ-law audio fed in any pieces, by the Goertzel algorithm over 205-sample
    blocks (about 26 ms, the classic size at 8 kHz: each of the eight frequencies falls near
    a bin centre). A key counts once it is seen in two blocks running and is told once until
    the line is quiet again, so a held key is one key and two presses of a key are two.
    """

    BLOCK: Final = 205

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float64)
        self._candidate: str | None = None
        self._seen = 0
        self._told: str | None = None
        self.keys = ""
        frequencies = np.array([*_ROWS, *_COLUMNS])
        self._coefficients = 2 * np.cos(2 * np.pi * frequencies / RATE)

    def feed(self, ulaw: bytes) -> str:
        """Audio heard; returns the keys recognised in it (also added to :attr:`keys`)."""
        pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
        self._pending = np.concatenate([self._pending, pcm])
        found = ""
        while len(self._pending) >= self.BLOCK:
            block, self._pending = self._pending[: self.BLOCK], self._pending[self.BLOCK :]
            key = self._key_in(block)
            if key is not None and key == self._candidate:
                self._seen += 1
            else:
                self._candidate, self._seen = key, 1
            if key is None:
                self._told = None
            elif self._seen >= 2 and self._told != key:
                self._told = key
                found += key
        self.keys += found
        return found

    def _key_in(self, block: NDArray[np.float64]) -> str | None:
        powers = self._powers(block)
        energy = float(np.dot(block, block)) * self.BLOCK / 2
        if energy < 1e9:  # quieter than about -50 dBm0: no key
            return None
        rows, columns = powers[:4], powers[4:]
        row, column = int(np.argmax(rows)), int(np.argmax(columns))
        low, high = rows[row], columns[column]
        # The pair must carry most of the energy, neither tone far weaker than the other,
        # and each stand out from the rest of its group.
        if low + high < 0.5 * energy or not 1 / 8 < low / high < 8:
            return None
        if np.sort(rows)[-2] > low / 8 or np.sort(columns)[-2] > high / 8:
            return None
        return _LAYOUT[row][column]

    def _powers(self, block: NDArray[np.float64]) -> NDArray[np.float64]:
        coefficients = self._coefficients
        previous = np.zeros(len(coefficients))
        before = np.zeros(len(coefficients))
        for sample in block:
            current = sample + coefficients * previous - before
            before, previous = previous, current
        result: NDArray[np.float64] = previous**2 + before**2 - coefficients * previous * before
        return result
