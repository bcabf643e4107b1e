"""The long-running daemon: builds the actor tree, waits for a signal or a give-up, shuts down.

`python run.py` calls :func:`serve`. The daemon exits 0 after SIGTERM/SIGINT and a bounded
shutdown, and non-zero when the root supervisor gave up, so a service manager restarts it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import pykka
import structlog
from google import genai

from actors.call_supervisor import CallSupervisor, admission_limits
from actors.monitor import ActorMonitor
from actors.reminder_scheduler import ReminderScheduler
from actors.router import Router
from actors.supervisor import RootWatch, Supervisor, start_root
from actors.telephony import Telephony
from tars_actors.actor_messages import EndWithNotice, SettingsChanged
from tars_actors.audio import _libsoxr as libsoxr
from tars_actors.call.admission import CallAdmission
from tars_actors.call.hooks import CallHooks
from tars_actors.call.pin_desk import PinDesk
from tars_actors.cluster.members import Membership
from tars_actors.cluster.presence import remote_sessions
from tars_actors.cluster.wakeup import WakeKind, announce
from tars_actors.daemon.fast_paths import decide_all as decide_fast_paths
from tars_actors.daemon.tree import Runtime, live_actor, system_children
from tars_actors.goals.desk import GoalDesk
from tars_actors.messaging.ledger import MessageLedger
from tars_actors.messaging.routing import Presence, Switchboard
from tars_actors.model.wire import make_client
from tars_actors.net.loop import LoopThread
from tars_actors.runtime import _malloc_trim
from tars_actors.runtime.actor import ActorExit
from tars_actors.runtime.events import EventBus
from tars_actors.runtime.log import set_level
from tars_actors.runtime.observability import install_stack_dump_signal
from tars_actors.runtime.settings import Settings, SettingsError, load_settings
from tars_actors.runtime.supervision import ChildSpec, Strategy, SupervisorFlags
from tars_actors.runtime.timers import ThreadTimers
from tars_actors.store import DaemonStatus, Store
from tars_actors.telephony.server import Server
from tars_actors.tools import ToolServices, build_registry

__all__ = ["EXIT_GAVE_UP", "EXIT_OK", "Daemon", "serve"]

log = structlog.get_logger("tars.daemon")

EXIT_OK = 0
#: The root supervisor reached its restart intensity and stopped.
EXIT_GAVE_UP = 1
#: Extra time allowed beyond the children's own shutdown timeouts.
_SHUTDOWN_MARGIN_SECONDS = 2.0
#: What callers still on the line hear when TARS stops (Twilio speaks it, then hangs up).
RESTART_NOTICE = (
    "Sorry, I have to hang up now: the assistant is restarting. Please call again in a minute."
)
#: How long a call's stream may outlive the notice before TARS hangs up itself.
NOTICE_GRACE_SECONDS = 5.0
#: Settings that a SIGHUP applies to the running daemon; others need a restart.
LIVE_SETTINGS = frozenset(
    {
        "logging.level",
        "assistant.language",
        "gemini.max_sessions",
        "sessions.max_concurrent",
        "sessions.max_call_seconds",
        "sessions.shutdown_grace_seconds",
        "sessions.model_unreachable_seconds",
        "sessions.owner_reserved",
        "sessions.max_per_caller",
        "sessions.unknown_calls_per_hour",
        "reminders.delivery",
    }
)


@dataclass
class Daemon:
    """One running TARS: store, shared resources, the root supervisor and the server."""

    settings: Settings
    events: EventBus = field(default_factory=EventBus)
    timers: ThreadTimers = field(default_factory=ThreadTimers)
    store: Store | None = None
    membership: Membership | None = None
    runtime: Runtime | None = None
    server: Server | None = None
    root: pykka.ActorRef[Supervisor] | None = None
    watch: RootWatch | None = None
    root_exit: ActorExit | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    stop_signal: int | None = None
    reload_requested: bool = False
    _children: Callable[[Runtime], list[ChildSpec]] = system_children
    #: Tests run the actor tree alone; the daemon serves Twilio.
    with_server: bool = True
    #: One of the workers of `run.py --workers N`, which share [server] port (SO_REUSEPORT).
    reuse_port: bool = False

    def start(self) -> None:
        """Open and migrate the database, start the actor tree, then the server."""
        # Before any connection or call: each fast path runs its self-test once here.
        fast_paths = decide_fast_paths()
        # Before the actors' threads: they share the arenas (see runtime/_malloc_trim.py).
        _malloc_trim.limit_arenas()
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
            membership = Membership(store, lease_seconds=self.settings.cluster.lease_seconds)
            join_cluster(membership)
        finally:
            store.close()
        self.store = store
        self.membership = membership
        # With several daemons on the database, the Router and the tools see their calls too.
        remote = remote_sessions(store) if store.clustered else None
        switchboard = Switchboard(
            presence=Presence(remote), ledger=MessageLedger(store), router=live_actor(Router)
        )
        tool_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="tars-tool"
        )
        goals = GoalDesk(
            settings=self.settings,
            store=store,
            switchboard=switchboard,
            client=self._model_client,
            pool=tool_pool,
        )
        self.runtime = Runtime(
            settings=self.settings,
            store=store,
            timers=self.timers,
            events=self.events,
            tools=build_registry(
                ToolServices(
                    settings=self.settings,
                    switchboard=switchboard,
                    reminders=live_actor(ReminderScheduler),
                    clock=self.timers.wall_now,
                    goals=goals,
                    telephony=live_actor(Telephony),
                    calls=live_actor(CallSupervisor),
                )
            ),
            switchboard=switchboard,
            admission=CallAdmission(admission_limits(self.settings)),
            pins=PinDesk(store, self.settings.secrets.owner_pin),
            io_loop=LoopThread("tars-io"),
            tool_pool=tool_pool,
            goals=goals,
            membership=membership,
            boot=store.daemon_id,
        )
        sup = self.settings.supervision
        flags = SupervisorFlags(
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=sup.max_restarts,
            period_seconds=sup.period_seconds,
        )
        self.root, self.watch = start_root(
            "root",
            flags,
            self._children(self.runtime),
            timers=self.timers,
            events=self.events,
            on_exit=self._on_root_exit,
        )
        self._finish_interrupted_goals()
        if self.with_server and self.settings.secrets.gemini_api_key:
            # Made now, not by the first caller's webhook: building the client (its TLS
            # context, the SDK's modules) takes tens of milliseconds the caller would hear.
            self._model_client()
        if self.with_server:
            runtime = self.runtime
            hooks = CallHooks(
                lambda: runtime.settings,
                runtime.admission,
                live_actor(CallSupervisor),
                self.ready,
                store=self.store,
                pins=runtime.pins,
                serving_peers=self._serving_peers,
            )
            self.server = Server(
                self.settings,
                hooks,
                loop_thread=self.runtime.io_loop,
                stream_per_call=self.store.clustered,
                reuse_port=self.reuse_port,
            )
            self.server.start()
        log.info(
            "daemon.started",
            pid=os.getpid(),
            port=self.server.port if self.server is not None else None,
            # python-soxr's slower path is used where libsoxr cannot be called directly.
            resampler="libsoxr" if libsoxr.available() else "python-soxr",
            # Which paths that reach under a library run; the public twin runs otherwise.
            fast_paths={path.name: path.on for path in fast_paths},
            fast_paths_off={path.name: path.reason for path in fast_paths if not path.on},
            caller_id_trust=self.settings.owner.caller_id_trust,
        )
        for note in self.settings.owner_trust_notes():
            # Every start: "number" hands the owner's powers to a faked caller ID, and
            # "attested" without a PIN leaves an unattested owner with the stranger's level.
            log.warning("daemon.owner_trust", note=note)

    def _finish_interrupted_goals(self) -> None:
        """Goal calls a dead daemon was placing or running are over: report them failed."""
        assert self.runtime is not None
        unreported, interrupted = self.runtime.goals.take_up()
        if unreported:
            log.info("goals.reporting_after_restart", count=unreported)
        if interrupted:
            log.info("goals.failed_after_restart", count=interrupted)

    def _serving_peers(self) -> int:
        """Other members serving, as of the last heartbeat (read on the server's threads,
        without a query): a draining daemon refuses new webhooks and streams with 503 then,
        so that the balancer hands them to one of those."""
        membership = self.membership
        return 0 if membership is None else membership.serving_peers

    def _model_client(self) -> genai.Client:
        """The google-genai client, made on first use (the text model's summaries too)."""
        runtime = self.runtime
        assert runtime is not None
        if runtime.model_client is None:
            runtime.model_client = make_client(self.settings)
        return runtime.model_client

    def ready(self) -> bool:
        """The actor tree is up (the root and every permanent child) and TARS is not
        draining for a shutdown."""
        root, runtime = self.root, self.runtime
        if root is None or runtime is None or not root.is_alive() or runtime.admission.draining:
            return False
        return all(
            live_actor(kind)() is not None
            for kind in (CallSupervisor, Router, ReminderScheduler, Telephony, ActorMonitor)
        )

    def _on_root_exit(self, exit_: ActorExit) -> None:
        self.root_exit = exit_
        self.wake.set()

    def request_stop(self, signum: int) -> None:
        """Called from a signal handler: only flags the request."""
        self.stop_signal = signum
        self.wake.set()

    def request_reload(self) -> None:
        """Called from the SIGHUP handler: only flags the request."""
        self.reload_requested = True
        self.wake.set()

    def wait(self) -> int:
        """Block until a stop signal or until the root supervisor stops on its own,
        reloading the settings on each SIGHUP meanwhile."""
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stop_signal is not None or self.root_exit is not None:
                break
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
        if self.stop_signal is None:
            reason = self.root_exit.reason if self.root_exit is not None else "unknown"
            log.error("daemon.root_gave_up", reason=str(reason))
            self.shutdown()
            return EXIT_GAVE_UP
        log.info("daemon.stopping", signal=signal.Signals(self.stop_signal).name)
        self.drain()
        self.shutdown()
        return EXIT_OK

    def drain(self) -> None:
        """Take no new calls, give live ones ``[sessions] shutdown_grace_seconds`` to end,
        then end the rest with a spoken notice."""
        runtime = self.runtime
        if runtime is None:
            return
        admission = runtime.admission
        admission.draining = True
        self._leave(DaemonStatus.DRAINING)
        grace = self.settings.sessions.shutdown_grace_seconds
        log.info("daemon.draining", live_calls=admission.live, grace_seconds=grace)
        if admission.wait_idle(grace):
            return
        calls = live_actor(CallSupervisor)()
        if calls is not None:
            log.info("daemon.ending_calls", live_calls=admission.live)
            with contextlib.suppress(pykka.ActorDeadError):
                calls.tell(
                    EndWithNotice(
                        text=RESTART_NOTICE, reason="shutdown", grace_seconds=NOTICE_GRACE_SECONDS
                    )
                )
        if not admission.wait_idle(NOTICE_GRACE_SECONDS + _SHUTDOWN_MARGIN_SECONDS):
            log.warning("daemon.calls_still_live", live_calls=admission.live)

    def reload(self) -> bool:
        """Re-read the settings file; apply what may change live, log what changed and what
        needs a restart. An invalid file changes nothing; the reason is logged."""
        path = self.settings.source
        try:
            fresh = load_settings(path, environ=os.environ)
        except SettingsError as error:
            # The problems say why; a traceback would add nothing.
            log.error("settings.reload_rejected", path=path, problems=list(error.problems))  # noqa: TRY400
            return False
        old, new = self.settings.to_data(), fresh.to_data()
        changed = {
            f"{section}.{key}": (value, new[section][key])
            for section, values in old.items()
            for key, value in values.items()
            if new[section][key] != value
        }
        live = {key: change for key, change in changed.items() if key in LIVE_SETTINGS}
        needs_restart = sorted(set(changed) - LIVE_SETTINGS)
        if not changed:
            log.info("settings.reload_unchanged", path=path)
            return True
        applied = self.settings.with_overrides({key: new for key, (_, new) in live.items()})
        self.settings = applied
        runtime = self.runtime
        if runtime is not None:
            runtime.settings = applied
            runtime.admission.use(admission_limits(applied))
            runtime.goals.use(applied)
        for kind in (CallSupervisor, ReminderScheduler):
            ref = live_actor(kind)()
            if ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(SettingsChanged(settings=applied))
        # Logged before a new level applies: raising the level must not hide this line.
        log.info(
            "settings.reloaded",
            path=path,
            changed={key: {"from": was, "to": now} for key, (was, now) in live.items()},
            needs_restart=needs_restart,
        )
        if "logging.level" in live:
            set_level(applied.logging.level)
        return True

    def shutdown(self) -> None:
        """Stop the actor tree within a bounded time, then the server and shared resources."""
        if self.runtime is not None:
            self.runtime.admission.draining = True
        root = self.root
        if root is not None and root.is_alive():
            try:
                root.stop(block=True, timeout=_shutdown_timeout(self.settings))
            except pykka.Timeout:
                # A timeout has no useful traceback.
                log.error(  # noqa: TRY400
                    "daemon.shutdown_timeout", timeout=_shutdown_timeout(self.settings)
                )
        if self.server is not None:
            self.server.stop()
        if self.runtime is not None:
            self.runtime.tool_pool.shutdown(wait=False, cancel_futures=True)
            self.runtime.io_loop.stop()
        self.timers.close()
        # Its calls are over and its actors gone: what it still held is the others' now.
        self._leave(DaemonStatus.STOPPED)
        if self.store is not None:
            self.store.shutdown()
        log.info("daemon.stopped")

    def _leave(self, status: DaemonStatus) -> None:
        membership, store = self.membership, self.store
        if membership is None or store is None:
            return
        try:
            with store.connection():
                membership.leave(status)
                if status is DaemonStatus.DRAINING:
                    # Counted now, not at the last heartbeat: whether the calls that come
                    # while it drains can be passed on to another member.
                    membership.peers()
                if status is DaemonStatus.STOPPED and store.clustered:
                    announce(store, WakeKind.LEFT, store.daemon_id)
        except Exception:  # the database is away: the others wait out the lease instead
            log.exception("cluster.leave_failed", status=str(status))


def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until the root supervisor gives up (exit 1).

    ``reuse_port``: listen with SO_REUSEPORT, as one of several workers on one port."""
    daemon = Daemon(settings, reuse_port=reuse_port)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        daemon.request_stop(signum)

    def on_hangup(_signum: int, _frame: FrameType | None) -> None:
        daemon.request_reload()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    install_stack_dump_signal()
    try:
        daemon.start()
    except Exception:
        log.exception("daemon.start_failed")
        daemon.shutdown()
        return EXIT_GAVE_UP
    _settle_startup_objects()
    watch_collection_pauses()
    code = daemon.wait()
    _exit_despite_abandoned_threads(code)
    return code


#: A garbage collection pass longer than this stalls every call's audio audibly: logged.
GC_PAUSE_WARNING_SECONDS = 0.02


def _settle_startup_objects() -> None:
    """Keep the objects of start-up (modules, SDK schemas, actors) out of later collections.

    A full collection walks every tracked object: over the heap as it stands once the
    daemon has started, one pass took 50-66 ms (measured with ``gc.callbacks``), long
    enough to stall every call's audio at once whenever it came. Frozen, those objects
    are never walked again, and a full pass covers only what the calls themselves hold.
    """
    gc.collect()
    gc.freeze()


def watch_collection_pauses(
    threshold: float = GC_PAUSE_WARNING_SECONDS,
) -> Callable[[str, dict[str, int]], None]:
    """Log every garbage collection pass longer than ``threshold`` seconds (``gc.pause``,
    with its generation and duration); returns the callback, to remove it again."""
    started = 0.0

    def watch(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        seconds = time.perf_counter() - started
        if seconds > threshold:
            log.warning(
                "gc.pause",
                generation=info["generation"],
                pause_ms=round(seconds * 1000, 1),
                collected=info["collected"],
            )

    gc.callbacks.append(watch)
    return watch


def join_cluster(membership: Membership) -> None:
    """Register this daemon, and take over members gone before it started (a predecessor on
    this machine, or one whose lease ran out): their calls are closed."""
    membership.register()
    gone = membership.take_over()
    closed = sum(member.sessions_closed for member in gone) + membership.close_unowned_calls()
    if closed:
        log.warning("store.sessions_closed", count=closed, reason="daemon restart")
    log.info(
        "cluster.joined",
        daemon=membership.daemon_id,
        clustered=membership.clustered,
        members_gone=[member.daemon_id for member in gone],
        lease_seconds=membership.lease.total_seconds(),
    )


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
