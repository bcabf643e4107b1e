"""The requests Telephony is carrying out, by intent key; kept by the runtime, so that a
Telephony started in a crashed one's place knows what its predecessor left.

Asked again while the first is being carried out, a request joins it and gets the same
reply. A key is *working* while a thread carries it out, *paused* while its outcome is
unknown and a recheck is due; a Telephony that starts takes up the paused ones (its
predecessor's recheck timers died with it).
"""

from __future__ import annotations

import threading

from tars_actors.telephony.intents import LookupGate, TelephonyRequest

__all__ = ["Outbox"]


class Outbox:
    """Thread-safe; one per daemon process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[TelephonyRequest]] = {}
        self._working: set[str] = set()
        #: One lookup at a time, none while a request is on its way (one record, one intent);
        #: shared, so a new Telephony's lookups wait for an old one's sends.
        self.gate = LookupGate()

    def join(self, key: str, request: TelephonyRequest) -> bool:
        """A request: True when it is to be carried out now (its key is new here).

        A key being worked on, or paused with its recheck due, is joined: the request gets
        the same reply, and the recheck keeps its backoff (asking again at once would make
        every repeat of a request a lookup while Twilio cannot be asked)."""
        with self._lock:
            waiting = self._waiting.setdefault(key, [])
            waiting.append(request)
            if len(waiting) > 1:
                return False
            self._working.add(key)
            return True

    def resume(self, key: str) -> TelephonyRequest | None:
        """A recheck is due: the request to carry out again, unless the key is done or
        someone works on it already."""
        with self._lock:
            waiting = self._waiting.get(key)
            if not waiting or key in self._working:
                return None
            self._working.add(key)
            return waiting[0]

    def pause(self, key: str) -> None:
        """The outcome is unknown: the key waits for its recheck (or a new request)."""
        with self._lock:
            self._working.discard(key)

    def done(self, key: str) -> list[TelephonyRequest]:
        """The outcome is known: every request for ``key``, to reply to."""
        with self._lock:
            self._working.discard(key)
            return self._waiting.pop(key, [])

    def paused(self) -> list[str]:
        """Keys waiting for a recheck nobody will make (a new Telephony takes them up)."""
        with self._lock:
            return [key for key in self._waiting if key not in self._working]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._waiting
