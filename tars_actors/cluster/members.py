"""Membership: this daemon's row in ``daemons``, its heartbeat, and what becomes of members
that stop renewing theirs.

Several daemons may share one PostgreSQL database. Each registers a row at start, renews its
heartbeat every third of ``[cluster] lease_seconds``, and marks itself ``draining`` and then
``stopped`` when it stops. A member whose heartbeat is older than the lease is *lost*: the
first member to lock its row (``FOR UPDATE SKIP LOCKED``, so exactly one does) marks it so
and closes its calls ("daemon lost"); from then on whatever it held (a message in hand, a
claimed reminder, a request on its way to Twilio, a goal call) is any live member's to take
up, through the same claims that keep one daemon's work from being done twice.

A member of the same kernel boot and process namespace whose process is gone is known dead at
once: a daemon restarted on the same machine (or a worker of ``--workers``) takes over its
predecessor at boot instead of a lease later.

With SQLite there is one daemon: it registers too (so ``inspect`` shows it), and every other
row is a predecessor, lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from tars_actors.store import (
    LIVE_DAEMON_STATUSES,
    AgentSession,
    Daemon,
    DaemonStatus,
    SessionStatus,
    Store,
    utcnow,
)

__all__ = ["LOST_REASON", "RESTART_REASON", "Membership", "TakenOver", "this_place"]

log = structlog.get_logger("tars.cluster")

#: The end reason of the calls of a member that stopped renewing its heartbeat.
LOST_REASON = "daemon lost"
#: The end reason of the calls of a predecessor found dead at boot.
RESTART_REASON = "daemon restart"
#: Heartbeats per lease: a member misses two before it is lost.
BEATS_PER_LEASE = 3
#: How long taking a member over waits for a row lock.
_LOCK_TIMEOUT_MS = 2000


def this_place() -> str:
    """The kernel boot and PID namespace this process runs in: two daemons of one place see
    each other's processes, so one can tell whether the other's is still there."""
    parts: list[str] = []
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    if len(parts) < 2:
        # Without both, no process of another daemon can be checked: leases decide.
        return ""
    return ":".join(parts)[:80]


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: it exists
        return False
    return False


@dataclass(frozen=True, slots=True)
class TakenOver:
    """A member this daemon found gone: its calls were closed, its work is free."""

    daemon_id: str
    host: str
    pid: int
    #: Seconds since its last heartbeat.
    silent_seconds: float
    sessions_closed: int
    #: "lease" (it stopped renewing its heartbeat) or "process gone" (same machine).
    why: str


class Membership:
    """This daemon's membership: register, renew, leave, and take over lost members.

    Every method runs on the calling thread's connection (actors connect in ``on_start``).
    """

    def __init__(
        self,
        store: Store,
        *,
        lease_seconds: float,
        clock: Callable[[], datetime] | None = None,
        place: str | None = None,
        process_gone: Callable[[int], bool] = _process_gone,
    ) -> None:
        self._store = store
        self.lease = timedelta(seconds=lease_seconds)
        #: Heartbeats are written and judged by one clock, the database's (on SQLite, or
        #: when ``clock`` is given, that one): members' own clocks may disagree.
        self._given_clock = clock
        self._place = this_place() if place is None else place
        self._process_gone = process_gone
        #: Other members serving, as of the last heartbeat (read by the server's threads).
        self.serving_peers = 0

    def _clock(self) -> datetime:
        if self._given_clock is not None:
            return self._given_clock()
        if not self._store.clustered:
            return utcnow()
        untyped: Any = self._store.database
        value: datetime = untyped.execute_sql("SELECT now()").fetchone()[0]
        return value.astimezone(UTC)

    @property
    def daemon_id(self) -> str:
        return self._store.daemon_id

    @property
    def clustered(self) -> bool:
        return self._store.clustered

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease.total_seconds() / BEATS_PER_LEASE

    def register(self) -> None:
        """Write this daemon's row, serving."""
        now = self._clock()
        with self._store.transaction():
            Daemon.insert(
                id=self.daemon_id,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                place=self._place,
                status=DaemonStatus.SERVING,
                started_at=now,
                heartbeat_at=now,
            ).on_conflict(
                conflict_target=[Daemon.id],
                update={Daemon.status: DaemonStatus.SERVING, Daemon.heartbeat_at: now},
            ).execute()

    def heartbeat(self, *, draining: bool = False) -> bool:
        """Renew the heartbeat. False when another member had taken this one for lost (its
        calls' rows were closed and its work taken): it is registered again and says so."""
        status = DaemonStatus.DRAINING if draining else DaemonStatus.SERVING
        with self._store.transaction():
            renewed = (
                Daemon.update(heartbeat_at=self._clock(), status=status)
                .where(Daemon.id == self.daemon_id, Daemon.status.in_(LIVE_DAEMON_STATUSES))
                .execute()
            )
        if renewed:
            return True
        row = Daemon.get_or_none(Daemon.id == self.daemon_id)
        log.error(
            "cluster.found_lost",
            daemon=self.daemon_id,
            taken_over_by=None if row is None else row.taken_over_by,
            why="this daemon did not renew its heartbeat within the lease; its calls' rows "
            "were closed and its pending work taken by another member",
        )
        self.register()
        return False

    def leave(self, status: DaemonStatus) -> None:
        """Mark this daemon draining (still a member) or stopped (gone, nothing held)."""
        now = self._clock()
        ended = now if status not in LIVE_DAEMON_STATUSES else None
        with self._store.transaction():
            Daemon.update(status=status, heartbeat_at=now, ended_at=ended).where(
                Daemon.id == self.daemon_id
            ).execute()

    def take_over(self) -> list[TakenOver]:
        """Mark every member that is gone lost and close its calls; each is taken over by
        exactly one member (the one whose transaction locked its row first)."""
        now = self._clock()
        taken: list[TakenOver] = []
        with self._store.transaction():
            if self._store.clustered:
                # A member frozen mid-transaction holds its calls' rows: give up on them for
                # this beat rather than stop beating (and be taken for lost) waiting.
                untyped: Any = self._store.database
                untyped.execute_sql(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT_MS}ms'")
            query = Daemon.select().where(
                Daemon.status.in_(LIVE_DAEMON_STATUSES), Daemon.id != self.daemon_id
            )
            for row in self._store.for_update(query, skip_locked=True):
                why = self._gone(row, now)
                if why is None:
                    continue
                closed = self._close_calls(str(row.id), LOST_REASON if why == "lease" else None)
                row.status = DaemonStatus.LOST
                row.ended_at = now
                row.taken_over_by = self.daemon_id
                row.save()
                taken.append(
                    TakenOver(
                        daemon_id=str(row.id),
                        host=str(row.host),
                        pid=int(row.pid),
                        silent_seconds=round((now - row.heartbeat_at).total_seconds(), 1),
                        sessions_closed=closed,
                        why=why,
                    )
                )
        for member in taken:
            log.warning(
                "cluster.daemon_lost",
                daemon=member.daemon_id,
                host=member.host,
                pid=member.pid,
                silent_seconds=member.silent_seconds,
                sessions_closed=member.sessions_closed,
                why=member.why,
            )
        return taken

    def _gone(self, row: Daemon, now: datetime) -> str | None:
        if not self._store.clustered:
            return "predecessor"  # one daemon per SQLite database: any other is gone
        if self._place and row.place == self._place and self._process_gone(int(row.pid)):
            return "process gone"
        if now - row.heartbeat_at > self.lease:
            return "lease"
        return None

    def _close_calls(self, daemon_id: str, reason: str | None) -> int:
        return self._close(AgentSession.daemon_id == daemon_id, reason or RESTART_REASON)

    def close_unowned_calls(self) -> int:
        """Close open call rows that name no daemon (written before clusters): at boot."""
        with self._store.transaction():
            return self._close(AgentSession.daemon_id.is_null(), RESTART_REASON)

    def _close(self, whose: Any, reason: str) -> int:
        open_ = AgentSession.status.in_([SessionStatus.PENDING, SessionStatus.ACTIVE])
        return int(
            AgentSession.update(
                status=SessionStatus.ENDED, ended_at=self._clock(), end_reason=reason
            )
            .where(whose, open_)
            .execute()
        )

    def peers(self) -> int:
        """Other members serving now, with a heartbeat within the lease (a draining
        daemon's webhooks and streams may go to them); kept for :attr:`serving_peers`."""
        if not self._store.clustered:
            return 0
        fresh = self._clock() - self.lease
        count = int(
            Daemon.select()
            .where(
                Daemon.status == DaemonStatus.SERVING,
                Daemon.id != self.daemon_id,
                Daemon.heartbeat_at >= fresh,
            )
            .count()
        )
        self.serving_peers = count
        return count
