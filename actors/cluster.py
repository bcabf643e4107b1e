"""The ClusterMember: this daemon's heartbeat, the take-over of members that are gone, and
the wake-up channel from the others.

A permanent child of the root supervisor, started first and stopped last. Every third of
``[cluster] lease_seconds`` it renews the heartbeat, takes over any member gone (its calls
closed as "daemon lost", exactly one member does), and tells the Router to sweep for
messages no live daemon holds, so nothing waits longer than a heartbeat even if a wake-up
is missed. On SQLite (one daemon) it only registers; there is no one else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
import structlog

from tars_actors.actor_messages import CallStatusChanged, EndWithNotice
from tars_actors.cluster.members import Membership
from tars_actors.cluster.messages import StreamElsewhere, TakeUp
from tars_actors.cluster.wakeup import Listener, Wake, WakeKind, parse_status
from tars_actors.messaging.routing import Dispatch
from tars_actors.runtime.actor import TarsActor, tell_live, teller
from tars_actors.runtime.timers import TimerHandle, Timers
from tars_actors.store import Store

__all__ = ["LOST_NOTICE", "ClusterMember"]

log = structlog.get_logger("tars.cluster")

Lookup = Callable[[], pykka.ActorRef[Any] | None]


#: What callers on the line hear when this daemon finds that the others took it for lost.
LOST_NOTICE = "Sorry, I have to hang up now: the assistant lost its connection. Please call again."
#: How long a call's stream may outlive that notice.
_NOTICE_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Beat:
    """Sent by the timer; the next is scheduled when one is handled."""


class ClusterMember(TarsActor):
    """Heartbeat, take-over and wake-ups for this daemon."""

    actor_kind = "ClusterMember"

    def __init__(
        self,
        *,
        store: Store,
        membership: Membership,
        timers: Timers,
        draining: Callable[[], bool],
        router: Lookup,
        calls: Lookup,
        takers: tuple[Lookup, ...],
        take_up_goals: Callable[[], object],
    ) -> None:
        """``router`` gets each woken message and every sweep; ``takers`` (the Router, the
        reminder scheduler, Telephony) are told :class:`TakeUp` when a member is gone or
        left; ``take_up_goals`` finishes a gone member's goal calls."""
        super().__init__()
        self._store = store
        self._membership = membership
        self._timers = timers
        self._draining = draining
        self._router = router
        self._calls = calls
        self._takers = takers
        self._take_up_goals = take_up_goals
        self._timer: TimerHandle | None = None
        self._listener: Listener | None = None

    def on_start(self) -> None:
        self._store.connect()
        if self._store.clustered:
            me = self.actor_ref
            self._listener = Listener(
                self._store,
                on_wake=self._woken,
                on_connected=teller(me, TakeUp(reason="listening")),
            )
            self._listener.start()
            self._schedule()

    def on_stop(self) -> None:
        self._halt()
        self._store.close()

    def on_failure(self, *_exc_info: Any) -> None:
        self._halt()
        with contextlib.suppress(Exception):
            self._store.close()

    def _halt(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._listener is not None:
            self._listener.stop()

    def _schedule(self) -> None:
        delay = self._membership.heartbeat_seconds
        self._timer = self._timers.call_later(delay, teller(self.actor_ref, _Beat()))

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Beat():
                try:
                    self._beat()
                finally:
                    self._schedule()
            case TakeUp():
                self._take_up(message)
            case _:
                return super().on_receive(message)
        return None

    def _beat(self) -> None:
        membership = self._membership
        try:
            self._store.connect()  # again, if the last beat lost it
            renewed = membership.heartbeat(draining=self._draining())
            membership.peers()
            gone = membership.take_over()
        except Exception:  # the database is away: beat again next time, on a new connection
            log.exception("cluster.heartbeat_failed", daemon=self._store.daemon_id)
            with contextlib.suppress(Exception):
                self._store.close()
            return
        if not renewed:
            # Taken for lost while it was away: its calls' rows were closed and what they
            # held was carried by another member. They end now, before a note one of them
            # still holds could be said a second time.
            notice = EndWithNotice(
                text=LOST_NOTICE, reason="daemon lost", grace_seconds=_NOTICE_GRACE_SECONDS
            )
            tell_live(self._calls, notice)
        if gone:
            reason = "member lost"
            self._take_up(TakeUp(reason=reason, gone=tuple(m.daemon_id for m in gone)))
        else:
            tell_live(self._router, TakeUp(reason="sweep"))

    def _take_up(self, message: TakeUp) -> None:
        """Carry what no live daemon holds: goals here, the rest by the actors that own it.

        (Re)connected to the wake-up channel, only messages may have been missed: the
        Router looks. A member gone or left: everything it held is looked at."""
        if not message.gone:
            tell_live(self._router, message)
            return
        try:
            self._take_up_goals()
        except Exception:
            log.exception("cluster.goals_take_up_failed", reason=message.reason)
        for lookup in self._takers:
            tell_live(lookup, message)
        log.info("cluster.took_up", reason=message.reason, gone=list(message.gone))

    def _woken(self, wake: Wake) -> None:
        """On the listener's thread: hand each wake-up to the actor it is for."""
        match wake.kind:
            case WakeKind.MESSAGE if wake.value.isdigit():
                if not tell_live(self._router, Dispatch(message_id=int(wake.value), woken=True)):
                    log.warning("cluster.router_not_running", message_id=wake.value)
            case WakeKind.STREAM:
                tell_live(self._calls, StreamElsewhere(call_sid=wake.value))
            case WakeKind.STATUS if (status := parse_status(wake.value)) is not None:
                call_sid, state, duration, answered_by = status
                changed = CallStatusChanged(
                    call_sid=call_sid,
                    status=state,
                    duration_seconds=duration,
                    answered_by=answered_by,
                    forwarded=True,
                )
                tell_live(self._calls, changed)
            case WakeKind.LEFT if wake.value != self._store.daemon_id:
                with contextlib.suppress(pykka.ActorDeadError):
                    self.actor_ref.tell(TakeUp(reason="member left", gone=(wake.value,)))
            case _:
                pass
