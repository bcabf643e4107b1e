"""The echo mode's resampler: caller audio brought to the model's 24 kHz, cheaply."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tars_actors.sim.gemini._messages import MODEL_AUDIO_RATE

__all__ = ["EchoResampler"]

# Per output sample: the input sample before it, the one after it, and the weight of "after".
_Plan = tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]


class EchoResampler:
    """Linear interpolation to 24 kHz, per chunk: crude, but enough for an echo tests can hear.

    Chunks almost always have the same length, so the sample positions and weights for each
    (length, rate) are computed once; the hot path is then two gathers and a multiply-add.
    """

    __slots__ = ("_plans",)

    def __init__(self) -> None:
        self._plans: dict[tuple[int, int], _Plan] = {}

    def to_model_rate(self, pcm: bytes, rate: int) -> bytes:
        if rate == MODEL_AUDIO_RATE:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
        if samples.size == 0:
            return b""
        plan = self._plans.get((samples.size, rate))
        if plan is None:
            plan = self._plan(samples.size, rate)
        before, after, weight = plan
        first: npt.NDArray[np.float32] = samples[before].astype(np.float32)
        resampled: npt.NDArray[np.float32] = first + (samples[after] - first) * weight
        return bytes(np.rint(resampled).astype("<i2").tobytes())

    def _plan(self, size: int, rate: int) -> _Plan:
        count = size * MODEL_AUDIO_RATE // rate
        positions = np.arange(count, dtype=np.float64) * (rate / MODEL_AUDIO_RATE)
        before = np.minimum(np.floor(positions).astype(np.intp), size - 1)
        after = np.minimum(before + 1, size - 1)
        weight = (positions - before).astype(np.float32)
        plan: _Plan = (before, after, weight)
        self._plans[(size, rate)] = plan
        return plan
