"""Several TARS daemons on one machine: ``python run.py --workers N`` starts N ``serve``
processes that share ``[server] port`` (SO_REUSEPORT) and the PostgreSQL database, passes
stop and reload signals on to them, and starts again one that dies.

The parent serves nothing itself: it only watches its workers, like a supervisor whose
children are processes. Its own exit code follows the daemon's: 0 after a stop signal and
the workers' clean exits, 1 when it gave up (so a service manager restarts the lot).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import peewee
import structlog

from tars_actors.runtime.settings import Settings
from tars_actors.runtime.supervision import RestartIntensity
from tars_actors.store.database import build_database, redact_url

__all__ = [
    "EXIT_GAVE_UP",
    "EXIT_OK",
    "RestartPolicy",
    "WorkerPool",
    "refusal",
    "run_workers",
    "stop_timeout",
    "worker_command",
]

log = structlog.get_logger("tars.workers")

EXIT_OK = 0
#: A worker kept dying (see :class:`RestartPolicy`), or one had to be killed at the stop.
EXIT_GAVE_UP = 1
#: The checkout's entry point, which each worker runs as operators run TARS.
RUN_PY = Path(__file__).resolve().parents[2] / "run.py"
#: The option that tells a ``serve`` it is one of several workers on one port.
REUSE_PORT_OPTION = "--reuse-port"
#: A worker is started again no sooner than this after its previous start: a worker that
#: dies at start (the database down, say) does not spin.
RESTART_GAP_SECONDS = 3.0
#: The workers' restart intensity, all together, as a supervisor's over its children:
#: one more restart within the period and the parent stops them all and exits 1.
MAX_RESTARTS = 5
RESTART_PERIOD_SECONDS = 60.0
#: Beyond a worker's own bounded shutdown (drain, the callers' notice, the actor tree),
#: before it is killed.
_STOP_MARGIN_SECONDS = 15.0


def refusal(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` daemons cannot run with ``settings`` (one line), or None."""
    if workers <= 1:
        return None
    url = settings.database.url
    if not isinstance(build_database(url), peewee.PostgresqlDatabase):
        return (
            f"--workers {workers}: [database] url is {redact_url(url)!r}, but several workers "
            "need PostgreSQL (they share their calls, messages and reminders through it); "
            "set [database] url to a postgresql:// URL, or run one daemon"
        )
    if settings.server.port == 0:
        return (
            f"--workers {workers}: [server] port is 0 (any free port), but the workers must "
            "share one fixed port; set [server] port"
        )
    return None


def worker_command(settings_path: str, *, python: str = sys.executable) -> list[str]:
    """How the parent starts one worker: ``python run.py --settings PATH serve --reuse-port``."""
    return [python, str(RUN_PY), "--settings", settings_path, "serve", REUSE_PORT_OPTION]


def stop_timeout(settings: Settings) -> float:
    """How long a worker may take to stop after SIGTERM before it is killed.

    A daemon drains for ``[sessions] shutdown_grace_seconds``, gives the calls still on the
    line a few seconds with the spoken notice, then stops its actor tree, each child within
    ``[supervision] shutdown_timeout_seconds`` (see :mod:`tars_actors.daemon.lifecycle`).
    """
    return (
        settings.sessions.shutdown_grace_seconds
        + settings.supervision.shutdown_timeout_seconds * 8
        + _STOP_MARGIN_SECONDS
    )


class RestartPolicy:
    """When a worker that died starts again, and when the parent gives up instead.

    Pure rules over a monotonic clock: a restart waits until ``gap`` seconds after the
    worker's previous start, and more than ``max_restarts`` within ``period`` (all workers
    together) is giving up.
    """

    def __init__(
        self,
        *,
        gap: float = RESTART_GAP_SECONDS,
        max_restarts: int = MAX_RESTARTS,
        period: float = RESTART_PERIOD_SECONDS,
    ) -> None:
        self.gap = gap
        self._intensity = RestartIntensity(max_restarts, period)

    def restart_at(self, *, now: float, started_at: float) -> float | None:
        """When the worker started at ``started_at`` that died at ``now`` starts again;
        None when this restart would exceed the intensity."""
        if not self._intensity.record(now):
            return None
        return max(now, started_at + self.gap)

    @property
    def recent(self) -> int:
        """Restarts counted in the window, as of the last death."""
        return self._intensity.recent()


@dataclass
class _Worker:
    """One worker's slot: its process now, or when its next start is due."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    #: The exit code of the process that died, told when the next one starts.
    exit_code: int | None = None
    #: Its exit has been seen (and its restart scheduled, if it gets one).
    reaped: bool = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class WorkerPool:
    """N worker processes, each run with ``command``; :meth:`run` blocks until they end.

    Signals are only flagged by their handlers (the main thread's) and acted on by the
    loop in :meth:`run`, as the daemon does with its own.
    """

    def __init__(
        self,
        command: Sequence[str],
        count: int,
        *,
        stop_timeout: float,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError(f"a pool needs at least one worker, got {count}")
        self._command = list(command)
        self._workers = [_Worker(index) for index in range(count)]
        self._stop_timeout = stop_timeout
        self._policy = policy or RestartPolicy()
        self._clock = clock
        self._wake = threading.Event()
        self._stop_signal: int | None = None
        self._reload_requested = False

    @property
    def pids(self) -> list[int]:
        """The running workers' process ids, in worker order."""
        return [w.process.pid for w in self._workers if w.process is not None and w.running]

    # -- signal handlers (main thread): flag and wake ------------------------------------

    def request_stop(self, signum: int) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def child_exited(self) -> None:
        self._wake.set()

    def install_signal_handlers(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            self.request_stop(signum)

        def on_hangup(_signum: int, _frame: FrameType | None) -> None:
            self.request_reload()

        def on_child(_signum: int, _frame: FrameType | None) -> None:
            self.child_exited()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hangup)
        signal.signal(signal.SIGCHLD, on_child)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and watch them until a stop signal (0 once all exited) or
        until they keep dying (1)."""
        for worker in self._workers:
            self._start(worker)
        log.info("workers.started", workers=len(self._workers), pids=self.pids)
        while True:
            self._wake.wait(self._next_timeout())
            self._wake.clear()
            if self._stop_signal is not None:
                return self._stop(signal.Signals(self._stop_signal))
            if self._reload_requested:
                self._reload_requested = False
                log.info("workers.reloading", pids=self.pids)
                self._signal_all(signal.SIGHUP)
            if not self._reap():
                log.error(
                    "workers.gave_up",
                    restarts=self._policy.recent,
                    max_restarts=MAX_RESTARTS,
                    period_seconds=RESTART_PERIOD_SECONDS,
                )
                self._stop(signal.SIGTERM)
                return EXIT_GAVE_UP
            self._start_due()
            if not any(w.running or w.restart_at is not None for w in self._workers):
                # Every worker exited 0 on its own (each was stopped by itself).
                log.info("workers.stopped", exit_codes=self._exit_codes())
                return EXIT_OK

    def _start(self, worker: _Worker) -> None:
        worker.process = subprocess.Popen(self._command)  # noqa: S603 (run.py, fixed arguments)
        worker.started_at = self._clock()
        worker.restart_at = None
        worker.reaped = False

    def _reap(self) -> bool:
        """Note the workers that exited and schedule their restarts; False to give up."""
        now = self._clock()
        for worker in self._workers:
            process = worker.process
            if process is None or worker.reaped or process.poll() is None:
                continue
            worker.reaped = True
            code = process.returncode
            if code == 0:
                log.info("workers.exited", worker=worker.index, pid=process.pid, exit_code=0)
                continue
            restart_at = self._policy.restart_at(now=now, started_at=worker.started_at)
            log.warning(
                "workers.died",
                worker=worker.index,
                pid=process.pid,
                exit_code=code,
                signal=_signal_name(code),
                restart_in_seconds=None if restart_at is None else round(restart_at - now, 1),
            )
            if restart_at is None:
                return False
            worker.restart_at = restart_at
            worker.exit_code = code
        return True

    def _start_due(self) -> None:
        now = self._clock()
        for worker in self._workers:
            if worker.restart_at is None or worker.restart_at > now:
                continue
            previous = worker.process
            assert previous is not None
            self._start(worker)
            assert worker.process is not None
            log.warning(
                "workers.restarted",
                worker=worker.index,
                pid=worker.process.pid,
                previous_pid=previous.pid,
                exit_code=worker.exit_code,
            )

    def _next_timeout(self) -> float | None:
        due = [w.restart_at for w in self._workers if w.restart_at is not None]
        # A SIGCHLD that came between the last poll and this wait has set the event.
        return max(0.0, min(due) - self._clock()) if due else None

    def _stop(self, signum: signal.Signals) -> int:
        """Pass ``signum`` on to every running worker; wait for them all, killing those
        still running after the stop timeout. 0 when every worker exited by itself."""
        for worker in self._workers:
            worker.restart_at = None  # a restart that was due is off
        log.info("workers.stopping", signal=signum.name, pids=self.pids)
        self._signal_all(signum)
        deadline = self._clock() + self._stop_timeout
        while self.pids and self._clock() < deadline:
            self._wake.wait(max(0.0, deadline - self._clock()))
            self._wake.clear()
            for worker in self._workers:
                if worker.process is not None:
                    worker.process.poll()
        killed = self.pids
        if killed:
            log.error("workers.killed", pids=killed, after_seconds=self._stop_timeout)
            self._signal_all(signal.SIGKILL)
            for worker in self._workers:
                if worker.process is not None:
                    worker.process.wait()
        log.info("workers.stopped", exit_codes=self._exit_codes())
        return EXIT_GAVE_UP if killed else EXIT_OK

    def _signal_all(self, signum: signal.Signals) -> None:
        for worker in self._workers:
            if worker.process is not None and worker.running:
                # It may have exited since the poll: then there is nothing to tell.
                try:
                    worker.process.send_signal(signum)
                except ProcessLookupError:
                    continue

    def _exit_codes(self) -> dict[int, int | None]:
        return {w.process.pid: w.process.returncode for w in self._workers if w.process is not None}


def _signal_name(code: int) -> str | None:
    """The signal that ended a process, from Popen's negative return code."""
    if code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return None


def run_workers(settings: Settings, workers: int) -> int:
    """``python run.py --workers N``: N daemons on ``settings``'s port until SIGTERM/SIGINT.

    The settings must have passed :func:`refusal`. Each worker reads the same settings file
    (and the same environment) and listens with SO_REUSEPORT.
    """
    path = os.path.abspath(settings.source)
    pool = WorkerPool(worker_command(path), workers, stop_timeout=stop_timeout(settings))
    pool.install_signal_handlers()
    log.info("workers.starting", workers=workers, port=settings.server.port, settings=path)
    return pool.run()
