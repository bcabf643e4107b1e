"""The capacity benchmark's arithmetic: what counts as lost and as added latency.

``python run.py load`` itself runs for half a minute on a busy machine; these tests give
its measuring functions calls whose timings are known, so each figure can be checked.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from tars_actors.ops.load import (
    MODEL_FRAME_BYTES,
    _Held,
    _measure,
    _outbound_added,
    _pipeline_delays,
)
from tars_actors.ops.model_stand_in import ModelTimes
from tars_actors.sim.softphone import FRAME_BYTES, ReceivedMedia

# The resamplers hold back nothing in these made-up calls, except where a test says so.
NONE_HELD = _Held(0, 0)
WINDOW = (0.0, 100.0)


@dataclass
class Phone:
    """What _measure reads of a softphone."""

    send_times: array[float] = field(default_factory=lambda: array("d"))
    received: list[ReceivedMedia] = field(default_factory=list)

    @property
    def bytes_received(self) -> int:
        return sum(len(media.payload) for media in self.received)

    def hear(self, at: float, frames: int = 1) -> None:
        """Receive ``frames`` frames at ``at``; they play after what is queued."""
        played_until = (
            self.received[-1].play_at + len(self.received[-1].payload) / 8000
            if self.received
            else 0.0
        )
        self.received.append(
            ReceivedMedia(
                at=at, payload=b"\xff" * FRAME_BYTES * frames, play_at=max(at, played_until)
            )
        )


def model_saw(arrivals: list[float], echoes: list[float] | None = None) -> ModelTimes:
    """One model frame arriving at each time in ``arrivals``, echoed at ``echoes``."""
    echoes = arrivals if echoes is None else echoes
    totals = [MODEL_FRAME_BYTES * (n + 1) for n in range(len(arrivals))]
    return ModelTimes(arrivals, totals, echoes, totals[: len(echoes)])


def measure(phone: Phone, model: ModelTimes, held_in: _Held = NONE_HELD) -> Any:
    return _measure(
        cast(Any, phone),
        model,
        window=WINDOW,
        inbound_delay=held_in,
        outbound_delay=NONE_HELD,
    )


def test_a_call_that_lost_nothing_reports_nothing_lost_and_its_transit_times() -> None:
    phone = Phone(send_times=array("d", [1.00, 1.02, 1.04]))
    model = model_saw([1.003, 1.025, 1.041])
    for at in (1.006, 1.028, 1.044):
        phone.hear(at)

    sample = measure(phone, model)

    assert (sample.lost_inbound, sample.lost_outbound) == (0, 0)
    assert sample.inbound == pytest.approx([0.003, 0.005, 0.001])
    # Each payload against when the caller needed it: once echoed, and once what came
    # before it had played (the first plays until 1.026, the second until 1.048).
    assert sample.outbound == pytest.approx([0.003, 0.002, 0.0])


def test_a_frame_the_model_never_got_is_lost_and_so_is_its_echo() -> None:
    phone = Phone(send_times=array("d", [1.00, 1.02, 1.04, 1.06]))
    model = model_saw([1.003, 1.025, 1.041])  # one frame short
    for at in (1.006, 1.028):  # and one echo short of that
        phone.hear(at)

    sample = measure(phone, model)

    assert (sample.lost_inbound, sample.lost_outbound) == (1, 1)


def test_what_a_resampler_holds_back_is_not_a_lost_frame_but_a_whole_frame_is() -> None:
    # The model got all but 300 bytes: a resampler holding back between 88 and 424.
    phone = Phone(send_times=array("d", [1.00, 1.02]))
    model = ModelTimes([1.003, 1.025], [320, 2 * MODEL_FRAME_BYTES - 300], [], [])
    assert measure(phone, model, _Held(88, 424)).lost_inbound == 0
    # A frame more short is a frame lost, whatever the resampler holds.
    model = ModelTimes([1.003], [MODEL_FRAME_BYTES - 300], [], [])
    assert measure(phone, model, _Held(88, 424)).lost_inbound == 1


def test_a_frame_counts_as_arrived_once_everything_the_resampler_can_emit_for_it_has() -> None:
    phone = Phone(send_times=array("d", [1.00]))
    # The first output lacks the 400 bytes the resampler held; the next frame's brings them.
    model = ModelTimes([1.002, 1.022], [MODEL_FRAME_BYTES - 400, 2 * MODEL_FRAME_BYTES], [], [])
    assert measure(phone, model, _Held(88, 424)).inbound == pytest.approx([0.002])
    assert measure(phone, model, _Held(88, 88)).inbound == pytest.approx([0.022])


def test_audio_sent_ahead_of_playout_adds_nothing() -> None:
    # Half a second echoed at once; the pacer sends it in step, each frame before needed.
    echoes = [1.0] * 25
    phone = Phone()
    for n in range(25):
        phone.hear(1.0 + n * 0.02 - 0.1 if n >= 5 else 1.001)

    assert _outbound_added(
        cast(Any, phone), echoes, [MODEL_FRAME_BYTES * (n + 1) for n in range(25)], WINDOW, 0
    ) == pytest.approx([0.001] + [0.0] * 24)


def test_one_late_payload_counts_once_not_again_for_every_payload_after_it() -> None:
    echoes = [1.0 + n * 0.02 for n in range(10)]
    phone = Phone()
    for n, at in enumerate(echoes):
        # The fourth payload is 50 ms late; the caller's playout runs 50 ms later from then.
        phone.hear(at + (0.05 if n == 3 else 0.0) + 0.001)

    added = _outbound_added(
        cast(Any, phone), echoes, [MODEL_FRAME_BYTES * (n + 1) for n in range(10)], WINDOW, 0
    )

    # The first is 1 ms late to an empty buffer; the next two come while it plays.
    assert added == pytest.approx([0.001, 0.0, 0.0, 0.05] + [0.0] * 6)


def test_the_resamplers_hold_back_less_than_a_frame_more_at_one_time_than_another() -> None:
    inbound, outbound = _pipeline_delays()
    assert 0 < inbound.least <= inbound.most < inbound.least + MODEL_FRAME_BYTES
    assert 0 < outbound.least <= outbound.most < outbound.least + FRAME_BYTES
