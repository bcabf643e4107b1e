"""The long-running daemon: builds the actor tree, waits for a signal or a give-up, shuts down.

`python run.py` calls :func:`serve`. The daemon exits 0 after SIGTERM/SIGINT and a bounded
shutdown, and non-zero when the root supervisor gave up, so a service manager restarts it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import pykka
import structlog

from actors.monitor import ActorMonitor
from actors.supervisor import RootWatch, Supervisor, start_root
from tars_actors.actor import ActorExit
from tars_actors.events import EventBus
from tars_actors.observability import install_stack_dump_signal
from tars_actors.settings import Settings
from tars_actors.store import Store
from tars_actors.supervision import ChildSpec, Restart, Strategy, SupervisorFlags
from tars_actors.timers import ThreadTimers, Timers

__all__ = ["EXIT_GAVE_UP", "EXIT_OK", "Daemon", "serve"]

log = structlog.get_logger("tars.daemon")

EXIT_OK = 0
#: The root supervisor reached its restart intensity and stopped.
EXIT_GAVE_UP = 1
#: Extra time allowed beyond the children's own shutdown timeouts.
_SHUTDOWN_MARGIN_SECONDS = 2.0


def system_children(
    settings: Settings, store: Store, timers: Timers, events: EventBus
) -> list[ChildSpec]:
    """The permanent children of the root supervisor, in start order."""
    monitor = settings.monitor
    return [
        ChildSpec(
            id="monitor",
            start=lambda: ActorMonitor.start(
                stats_interval=monitor.stats_interval_seconds,
                watchdog_seconds=monitor.watchdog_seconds,
                timers=timers,
                events=events,
            ),
            restart=Restart.PERMANENT,
            shutdown_timeout=settings.supervision.shutdown_timeout_seconds,
        ),
    ]


@dataclass
class Daemon:
    """One running TARS: store, timers, event bus and the root supervisor."""

    settings: Settings
    events: EventBus = field(default_factory=EventBus)
    timers: ThreadTimers = field(default_factory=ThreadTimers)
    store: Store | None = None
    root: pykka.ActorRef[Supervisor] | None = None
    watch: RootWatch | None = None
    root_exit: ActorExit | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    stop_signal: int | None = None
    _children: Callable[[Settings, Store, Timers, EventBus], list[ChildSpec]] = system_children

    def start(self) -> None:
        """Open and migrate the database, then start the actor tree."""
        store = Store.open(self.settings.database.url)
        store.connect()
        try:
            applied = store.migrate()
            log.info(
                "store.ready",
                database=store.url,
                schema_version=store.schema_version(),
                migrations_applied=applied,
            )
        finally:
            store.close()
        self.store = store
        sup = self.settings.supervision
        flags = SupervisorFlags(
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=sup.max_restarts,
            period_seconds=sup.period_seconds,
        )
        self.root, self.watch = start_root(
            "root",
            flags,
            self._children(self.settings, store, self.timers, self.events),
            timers=self.timers,
            events=self.events,
            on_exit=self._on_root_exit,
        )
        log.info("daemon.started", pid=os.getpid())

    def _on_root_exit(self, exit_: ActorExit) -> None:
        self.root_exit = exit_
        self.wake.set()

    def request_stop(self, signum: int) -> None:
        """Called from a signal handler: only flags the request."""
        self.stop_signal = signum
        self.wake.set()

    def wait(self) -> int:
        """Block until a stop signal or until the root supervisor stops on its own."""
        self.wake.wait()
        if self.stop_signal is None:
            reason = self.root_exit.reason if self.root_exit is not None else "unknown"
            log.error("daemon.root_gave_up", reason=str(reason))
            self.shutdown()
            return EXIT_GAVE_UP
        log.info("daemon.stopping", signal=signal.Signals(self.stop_signal).name)
        self.shutdown()
        return EXIT_OK

    def shutdown(self) -> None:
        """Stop the actor tree within a bounded time, then release the store and timers."""
        root = self.root
        if root is not None and root.is_alive():
            try:
                root.stop(block=True, timeout=_shutdown_timeout(self.settings))
            except pykka.Timeout:
                # A timeout has no useful traceback.
                log.error(  # noqa: TRY400
                    "daemon.shutdown_timeout", timeout=_shutdown_timeout(self.settings)
                )
        self.timers.close()
        if self.store is not None:
            self.store.shutdown()
        log.info("daemon.stopped")


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until the root supervisor gives up (exit 1)."""
    daemon = Daemon(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        daemon.request_stop(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    install_stack_dump_signal()
    try:
        daemon.start()
    except Exception:
        log.exception("daemon.start_failed")
        daemon.shutdown()
        return EXIT_GAVE_UP
    code = daemon.wait()
    _exit_despite_abandoned_threads(code)
    return code


def _exit_despite_abandoned_threads(code: int) -> None:
    # A child abandoned after its shutdown timeout keeps a non-daemon thread; the
    # interpreter would wait for it forever, and a bounded shutdown is the promise.
    stuck = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if stuck:
        log.error("daemon.exit_with_stuck_threads", threads=stuck)
        for handler in _all_log_handlers():
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _all_log_handlers() -> list[logging.Handler]:
    return list(logging.getLogger().handlers)


def _shutdown_timeout(settings: Settings) -> float:
    # Every child gets its own timeout, in sequence; the bound is their sum.
    return settings.supervision.shutdown_timeout_seconds * 8 + _SHUTDOWN_MARGIN_SECONDS
