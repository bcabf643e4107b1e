"""A blocking :class:`Softphone`: the same call on a loop thread, for blocking tests."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from tars_actors.audio.dtmf import DtmfDetector
from tars_actors.net.loop import LoopThread
from tars_actors.sim.softphone._records import (
    Clear,
    HttpReply,
    MarkReturn,
    ReceivedMedia,
)
from tars_actors.sim.softphone._softphone import Softphone
from tars_actors.sim.softphone._twiml import Twiml

__all__ = ["SyncSoftphone"]

T = TypeVar("T")


class SyncSoftphone:
    """A :class:`Softphone` on its own loop thread (or a shared :class:`LoopThread`)."""

    def __init__(
        self,
        *,
        server_url: str,
        public_url: str,
        auth_token: str,
        loop: LoopThread | None = None,
        **options: Any,
    ) -> None:
        self._own_loop = loop is None
        self._loop = loop or LoopThread("softphone")
        self.phone = Softphone(
            server_url=server_url, public_url=public_url, auth_token=auth_token, **options
        )
        # The keys heard so far: a detector, and how much of the audio it has been fed.
        self._keys_heard: tuple[DtmfDetector, int] | None = None

    @property
    def loop(self) -> LoopThread:
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        """Run ``coro`` on the phone's loop and wait for its result (e.g. a custom step)."""
        return self._loop.submit(coro).result(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Close the stream if still open and stop the loop thread if this phone owns it."""
        if not self._loop.loop.is_closed():
            self.run(self.phone.close())
        if self._own_loop:
            self._loop.stop()

    # Actions.

    def dial(self, url: str | None = None, **options: Any) -> Twiml:
        return self.run(self.phone.dial(url, **options))

    def connect(self, twiml: Twiml | str, **options: Any) -> None:
        self.run(self.phone.connect(twiml, **options))

    def call(self) -> Twiml:
        return self.run(self.phone.call())

    def pick_up(self, twiml: Twiml | str) -> None:
        self.run(self.phone.pick_up(twiml))

    def say(self, mulaw: bytes) -> None:
        self.phone.say(mulaw)

    def send_dtmf(self, digit: str) -> None:
        self.run(self.phone.send_dtmf(digit))

    def send_raw(self, frame: str | bytes) -> None:
        self.run(self.phone.send_raw(frame))

    def hang_up(self) -> None:
        self.run(self.phone.hang_up())

    def send_status(self, status: str = "completed", **options: Any) -> HttpReply:
        return self.run(self.phone.send_status(status, **options))

    def get_signed(self, public_url: str, params: Mapping[str, str], **options: Any) -> HttpReply:
        return self.run(self.phone.get_signed(public_url, params, **options))

    # Waiting, on the caller's thread.

    def wait_for_audio(self, min_bytes: int, timeout: float = 5.0) -> bytes:
        phone = self.phone
        phone._changes.wait(phone._audio_done(min_bytes), timeout, f"{min_bytes} bytes of audio")
        return phone.received_audio

    def wait_for_mark(self, name: str, timeout: float = 5.0) -> MarkReturn:
        phone = self.phone
        phone._changes.wait(phone._mark_done(name), timeout, f"mark {name!r}")
        return phone._find_mark(name)

    def wait_for_clear(self, timeout: float = 5.0, *, count: int = 1) -> Clear:
        phone = self.phone
        phone._changes.wait(phone._clear_done(count), timeout, f"{count} clear(s)")
        return phone.clears[count - 1]

    def wait_closed(self, timeout: float = 5.0) -> int | None:
        phone = self.phone
        phone._changes.wait(lambda: phone.closed, timeout, "the stream to close")
        return phone.close_code

    def wait_for(
        self, predicate: Callable[[Softphone], bool], timeout: float = 5.0, what: str = "it"
    ) -> None:
        phone = self.phone
        phone._changes.wait(lambda: predicate(phone), timeout, what)

    # Records, read straight from the phone (``self.phone`` has the rest).

    @property
    def call_sid(self) -> str:
        return self.phone.call_sid

    @property
    def stream_sid(self) -> str:
        return self.phone.stream_sid

    @property
    def closed(self) -> bool:
        return self.phone.closed

    @property
    def close_code(self) -> int | None:
        return self.phone.close_code

    @property
    def closed_by(self) -> Literal["softphone", "server"] | None:
        return self.phone.closed_by

    @property
    def frames_sent(self) -> int:
        return self.phone.frames_sent

    @property
    def received(self) -> list[ReceivedMedia]:
        return self.phone.received

    @property
    def received_audio(self) -> bytes:
        return self.phone.received_audio

    def heard_keys(self) -> str:
        """The keypad tones in what TARS sent so far (a Goertzel detector over it, fed as
        the audio comes)."""
        audio = self.phone.received_audio
        if self._keys_heard is None:
            self._keys_heard = (DtmfDetector(), 0)
        detector, fed = self._keys_heard
        detector.feed(audio[fed:])
        self._keys_heard = (detector, len(audio))
        return detector.keys

    def wait_for_keys(self, keys: str, timeout: float = 5.0) -> str:
        """Wait until the keys heard so far end with ``keys``; all of them."""
        phone = self.phone
        phone._changes.wait(lambda: self.heard_keys().endswith(keys), timeout, f"keys {keys}")
        return self.heard_keys()

    def played_audio(self) -> bytes:
        return self.phone.played_audio()

    @property
    def marks(self) -> list[MarkReturn]:
        return self.phone.marks

    @property
    def clears(self) -> list[Clear]:
        return self.phone.clears

    @property
    def violations(self) -> list[str]:
        return self.phone.violations
