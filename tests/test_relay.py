"""The audio relay: a call's frames between its stream and its model connection."""

from __future__ import annotations

from typing import Any

import numpy as np

from tars_actors.actor_messages import AudioInput, AudioStarted, ModelEvent, ModelInput, PlaybackCut
from tars_actors.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from tars_actors.call.relay import AudioRelay, LatencyHistogram
from tars_actors.sim.gemini import tone

ULAW_FRAME = pcm16_to_ulaw(tone(440.0, 0.02, rate=8000))
MODEL_CHUNK = tone(300.0, 0.1)  # 100 ms at 24 kHz


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.since: list[float] = []

    def send_audio(self, frames: Any, since: float = 0.0) -> None:
        self.sent.append(("audio", b"".join(frames)))
        self.since.append(since)

    def send_mark(self, name: str) -> None:
        self.sent.append(("mark", name))

    def clear(self) -> None:
        self.sent.append(("clear", None))

    def audio(self) -> bytes:
        return b"".join(payload for kind, payload in self.sent if kind == "audio")


class FakeChannel:
    def __init__(self, connection_id: int, *, open_: bool = True) -> None:
        self.connection_id = connection_id
        self.open = open_
        self.items: list[ModelInput] = []

    def send(self, item: ModelInput) -> bool:
        if not self.open:
            return False
        self.items.append(item)
        return True

    def close(self) -> None:
        self.open = False


class FakeSession:
    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


def make_relay(gap_frames: int = 500) -> tuple[AudioRelay, FakeSocket, FakeSession]:
    socket, session = FakeSocket(), FakeSession()
    relay = AudioRelay(socket=socket, session=session, gap_frames=gap_frames)  # type: ignore[arg-type]
    return relay, socket, session


def test_caller_audio_goes_to_the_model_as_16khz_pcm() -> None:
    relay, _, _ = make_relay()
    channel = FakeChannel(1)
    relay.use_channel(1, channel)
    for _ in range(50):
        relay.caller_audio(ULAW_FRAME)
    pcm = b"".join(item.pcm for item in channel.items if isinstance(item, AudioInput))
    assert 31_000 <= len(pcm) <= 32_000  # one second, less the resampler's few ms
    assert relay.stats.frames_in == 50


def test_caller_audio_is_kept_while_there_is_no_connection_and_sent_first_after() -> None:
    relay, _, _ = make_relay(gap_frames=5)
    for _ in range(20):
        relay.caller_audio(ULAW_FRAME)
    channel = FakeChannel(1)

    relay.use_channel(1, channel)
    relay.caller_audio(ULAW_FRAME)

    assert len(channel.items) == 6  # the newest five kept, then the live one
    assert relay.stats.gap_frames_dropped == 15


def test_audio_a_dead_connection_never_sent_goes_out_first_on_the_next() -> None:
    relay, _, _ = make_relay()
    first = FakeChannel(1)
    relay.use_channel(1, first)
    unsent = AudioInput(pcm=b"never-sent")
    relay.drop_channel(1, (unsent,))
    relay.caller_audio(ULAW_FRAME)  # in the gap
    second = FakeChannel(2)

    relay.use_channel(2, second)

    assert second.items[0] == unsent
    assert len(second.items) == 2
    assert first.items == []


def test_model_audio_reaches_the_caller_and_the_turn_ends_with_a_mark() -> None:
    relay, socket, session = make_relay()
    relay.use_channel(1, FakeChannel(1))

    relay.model_audio(1, MODEL_CHUNK)
    relay.model_audio(1, MODEL_CHUNK)
    mark = relay.turn_complete(1)

    assert mark == "turn-1"
    assert len(socket.audio()) == 1600  # 200 ms at 8 kHz, tail included
    assert socket.sent[-1] == ("mark", "turn-1")
    assert session.told == [ModelEvent(connection_id=1, event=AudioStarted())]  # once per turn


def test_barge_in_clears_at_once_and_drops_the_rest_of_the_turn() -> None:
    relay, socket, _ = make_relay()
    relay.use_channel(1, FakeChannel(1))
    relay.model_audio(1, MODEL_CHUNK)

    relay.interrupted(1)
    relay.model_audio(1, MODEL_CHUNK)  # the rest of the interrupted turn
    mark = relay.turn_complete(1)
    relay.model_audio(1, MODEL_CHUNK)  # the next turn is heard again

    kinds = [kind for kind, _ in socket.sent]
    assert kinds == ["audio", "clear", "audio"]
    assert mark is None


def test_audio_from_a_connection_that_is_not_current_is_ignored() -> None:
    relay, socket, session = make_relay()
    relay.use_channel(2, FakeChannel(2))

    relay.model_audio(1, MODEL_CHUNK)  # the rotated-out connection, late
    relay.interrupted(1)

    assert socket.sent == []
    assert session.told == []


def test_resampled_model_audio_keeps_its_pitch() -> None:
    relay, socket, _ = make_relay()
    relay.use_channel(1, FakeChannel(1))
    for _ in range(5):
        relay.model_audio(1, MODEL_CHUNK)
    relay.turn_complete(1)

    samples = np.frombuffer(ulaw_to_pcm16(socket.audio()), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    peak = np.fft.rfftfreq(samples.size, 1 / 8000)[int(np.argmax(spectrum))]
    assert abs(peak - 300.0) < 10.0


def test_the_moments_audio_reached_tars_travel_with_it_for_timing() -> None:
    relay, socket, _ = make_relay()
    channel = FakeChannel(1)
    relay.use_channel(1, channel)

    relay.caller_audio(ULAW_FRAME, 12.5)
    relay.model_audio(1, MODEL_CHUNK, 13.25)

    assert isinstance(channel.items[0], AudioInput)
    assert channel.items[0].captured_at == 12.5
    assert socket.since == [13.25]


def test_latency_percentiles_come_from_1ms_buckets_rounded_up() -> None:
    histogram = LatencyHistogram()
    for _ in range(98):
        histogram.add(0.0012)  # 1.2 ms
    histogram.add(0.0150)
    histogram.add(0.0400)
    assert histogram.percentile(50) == 2.0
    assert histogram.percentile(99) == 16.0
    assert histogram.percentile(100) == 41.0
    assert LatencyHistogram().percentile(50) is None


class PlayingSocket(FakeSocket):
    def __init__(self, unplayed: float) -> None:
        super().__init__()
        self.unplayed = unplayed

    def unplayed_seconds(self) -> float:
        return self.unplayed


def test_caller_speech_cuts_a_finished_turn_that_is_still_playing() -> None:
    socket, session = PlayingSocket(unplayed=3.0), FakeSession()
    relay = AudioRelay(socket=socket, session=session)  # type: ignore[arg-type]
    relay.use_channel(1, FakeChannel(1))
    relay.model_audio(1, MODEL_CHUNK)
    relay.turn_complete(1)  # generated; seconds of it still queued for the caller

    relay.caller_speaking(1)

    assert socket.sent[-1] == ("clear", None)
    assert session.told[-1] == ModelEvent(connection_id=1, event=PlaybackCut())


def test_caller_speech_leaves_the_model_to_interrupt_its_own_turn_and_short_tails_alone() -> None:
    socket, session = PlayingSocket(unplayed=3.0), FakeSession()
    relay = AudioRelay(socket=socket, session=session)  # type: ignore[arg-type]
    relay.use_channel(1, FakeChannel(1))
    relay.model_audio(1, MODEL_CHUNK)
    relay.caller_speaking(1)  # mid-turn: the model's own "interrupted" decides
    relay.turn_complete(1)
    socket.unplayed = 0.1
    relay.caller_speaking(1)  # almost done: let it finish

    assert ("clear", None) not in socket.sent
    assert all(not isinstance(m.event, PlaybackCut) for m in session.told)
