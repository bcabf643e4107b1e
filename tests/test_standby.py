"""The standby a call's session writes to until its Media Stream opens."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from tars_actors.call.relay import AudioRelay
from tars_actors.call.standby import MAX_HELD_FRAMES, StandbySocket


class RecordingSocket:
    """A real socket's calls, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.stream_sid = "MZ1"
        self.remote = "203.0.113.5:4000"
        self.host = "203.0.113.5"
        self.frames_rejected = 2

    def attach(self, session: Any, relay: Any = None) -> None:
        self.calls.append(("attach", session, relay))

    def send_audio(
        self, frames: Sequence[bytes], since: float = 0.0, *, tones: bool = False
    ) -> None:
        self.calls.append(("audio", tuple(frames), since, tones))

    def send_mark(self, name: str) -> None:
        self.calls.append(("mark", name))

    def clear(self) -> None:
        self.calls.append(("clear",))

    def close(self) -> None:
        self.calls.append(("close",))


def test_what_waits_for_the_stream_goes_out_in_order_untimed_and_after_the_attach() -> None:
    standby = StandbySocket()
    standby.attach("session", "relay")
    standby.send_audio([b"a", b"b"], 12.5)
    standby.send_mark("turn-1")
    standby.send_audio([b"c"], 13.0, tones=True)
    assert standby.held_frames == 3
    real = RecordingSocket()

    assert standby.connect(real) == 3

    assert real.calls == [
        ("attach", "session", "relay"),
        # The wait was the stream's: TARS's own latency figures leave it out (since 0.0).
        ("audio", (b"a", b"b"), 0.0, False),
        ("mark", "turn-1"),
        ("audio", (b"c",), 0.0, True),
    ]
    assert standby.held_frames == 0


def test_after_the_stream_opened_everything_is_forwarded_as_given() -> None:
    standby = StandbySocket()
    real = RecordingSocket()
    standby.connect(real)
    standby.send_audio([b"x"], 5.0)
    standby.send_mark("m")
    standby.clear()
    standby.attach("s")
    standby.close()
    assert real.calls == [
        ("audio", (b"x",), 5.0, False),
        ("mark", "m"),
        ("clear",),
        ("attach", "s", None),
        ("close",),
    ]
    assert (standby.stream_sid, standby.remote, standby.host) == (
        "MZ1",
        "203.0.113.5:4000",
        "203.0.113.5",
    )
    assert standby.frames_rejected == 2


def test_a_clear_drops_the_audio_held_and_keeps_the_marks_for_the_real_clear() -> None:
    standby = StandbySocket()
    standby.send_audio([b"a"])
    standby.send_mark("turn-1")
    standby.clear()
    standby.send_audio([b"b"])
    real = RecordingSocket()
    assert standby.connect(real) == 1
    assert real.calls == [("mark", "turn-1"), ("clear",), ("audio", (b"b",), 0.0, False)]


def test_a_standby_closed_before_the_stream_drops_what_it_held_and_closes_the_stream() -> None:
    standby = StandbySocket()
    standby.send_audio([b"a"])
    standby.close()
    standby.send_audio([b"b"])
    standby.send_mark("late")
    real = RecordingSocket()
    assert standby.connect(real) == 0
    assert real.calls == [("close",)]


def test_held_audio_is_bounded_and_what_is_dropped_is_counted() -> None:
    standby = StandbySocket()
    standby.send_audio([b"f"] * (MAX_HELD_FRAMES - 1))
    standby.send_audio([b"g", b"h", b"i"])
    standby.send_audio([b"j"])
    assert standby.held_frames == MAX_HELD_FRAMES
    assert standby.frames_dropped == 3


def test_a_stream_connects_once() -> None:
    standby = StandbySocket()
    standby.connect(RecordingSocket())
    with pytest.raises(RuntimeError, match="already"):
        standby.connect(RecordingSocket())


def test_nothing_given_while_the_stream_connects_is_lost_or_reordered() -> None:
    standby = StandbySocket()
    real = RecordingSocket()
    ready = threading.Barrier(2)

    def writer() -> None:
        ready.wait()
        for n in range(2000):
            standby.send_audio([n.to_bytes(2, "big")])

    thread = threading.Thread(target=writer)
    thread.start()
    ready.wait()
    standby.connect(real)
    thread.join()
    sent = [call[1][0] for call in real.calls if call[0] == "audio"]
    assert sent == [n.to_bytes(2, "big") for n in range(2000)]


class LoopSocket(RecordingSocket):
    """MediaStreamSocket's threading: on its loop a write happens at once, from any other
    thread it is queued onto the loop."""

    def __init__(self, loop: Any, loop_thread: int) -> None:
        super().__init__()
        self.loop, self.loop_thread = loop, loop_thread

    def _record(self, item: tuple[Any, ...]) -> None:
        if threading.get_ident() == self.loop_thread:
            self.calls.append(item)
        else:
            self.loop.call_soon_threadsafe(self.calls.append, item)

    def send_audio(
        self, frames: Sequence[bytes], since: float = 0.0, *, tones: bool = False
    ) -> None:
        self._record(("audio", tuple(frames), since, tones))

    def send_mark(self, name: str) -> None:
        self._record(("mark", name))


def test_the_relay_hands_the_stream_over_on_its_loop_so_nothing_overtakes_the_greeting() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        assert thread.ident is not None
        real = LoopSocket(loop, thread.ident)
        standby = StandbySocket()
        relay = AudioRelay(socket=standby, session=None)  # type: ignore[arg-type]
        standby.send_audio([b"greeting-1"])
        standby.send_mark("turn-1")

        def model_writes() -> None:  # the model's receive loop, writing as it reads
            for n in range(2, 50):
                relay._socket.send_audio([f"greeting-{n}".encode()])

        # The session learns of the stream while the model's audio keeps coming.
        loop.call_soon_threadsafe(model_writes)
        loop.call_soon_threadsafe(relay.use_socket, real, standby)
        loop.call_soon_threadsafe(model_writes)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    audio = [call[1][0] for call in real.calls if call[0] == "audio"]
    assert audio[:2] == [b"greeting-1", b"greeting-2"]
    assert real.calls[1] == ("mark", "turn-1")
    assert len(audio) == 1 + 2 * 48


def test_a_stream_offered_to_a_standby_that_closes_before_connecting_is_closed() -> None:
    standby = StandbySocket()
    real = RecordingSocket()
    assert standby.offer(real)
    standby.close()  # the session gave up waiting just as the stream came
    assert real.calls == [("close",)]


def test_a_closed_standby_takes_no_stream() -> None:
    standby = StandbySocket()
    standby.close()
    assert not standby.offer(RecordingSocket())
