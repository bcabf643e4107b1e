"""The actor tree of one daemon: the resources its actors share (:class:`Runtime`) and the
root supervisor's permanent children, in start order. The only code that imports ``actors``.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka
from google import genai

from actors.call_session import ModelStarter
from actors.call_supervisor import CallSupervisor, ModelStarterFactory
from actors.cluster import ClusterMember
from actors.gemini_connection import GeminiConnection
from actors.monitor import ActorMonitor
from actors.reminder_scheduler import ReminderScheduler
from actors.router import Router
from actors.telephony import Telephony
from tars_actors.call.admission import CallAdmission
from tars_actors.call.permissions import Permission
from tars_actors.call.persona import Persona
from tars_actors.call.pin_desk import PinDesk
from tars_actors.call.relay import AudioRelay
from tars_actors.call.session_info import SessionInfo
from tars_actors.cluster.members import Membership
from tars_actors.goals.desk import GoalDesk
from tars_actors.messaging.routing import Switchboard
from tars_actors.model.wire import ModelProfile, make_client
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.events import EventBus
from tars_actors.runtime.settings import Settings
from tars_actors.runtime.supervision import ChildSpec
from tars_actors.runtime.timers import Timers
from tars_actors.store import Store
from tars_actors.telephony.outbox import Outbox
from tars_actors.tools.registry import ToolRegistry

__all__ = ["Runtime", "live_actor", "system_children"]


@dataclass
class Runtime:
    """What the actors of one daemon share: resources made once, handed to each child."""

    settings: Settings
    store: Store
    timers: Timers
    events: EventBus
    tools: ToolRegistry
    admission: CallAdmission
    #: The owner's PIN and the numbers locked out of typing it.
    pins: PinDesk
    #: The asyncio loop of the server and of every Gemini Live connection: each call's
    #: audio relay runs there, next to both of its sockets.
    io_loop: LoopThread
    #: Slow tools run here, off the call actors' threads.
    tool_pool: concurrent.futures.ThreadPoolExecutor
    #: Live sessions, the message ledger and the Router, for sessions and tools.
    switchboard: Switchboard
    goals: GoalDesk
    #: This daemon's row among the daemons on the database.
    membership: Membership
    model_client: genai.Client | None = None
    #: Messages whose SMS is on its way in this run (kept across Router restarts).
    texting: set[int] = field(default_factory=set)
    #: What Telephony is carrying out (kept across Telephony restarts).
    outbox: Outbox = field(default_factory=Outbox)
    #: This run of the daemon, for records that must tell a restart from a reboot.
    boot: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def model_starter(self) -> ModelStarterFactory:
        """How a call session opens its model connections (with the settings current
        when the call starts: a SIGHUP may have changed the language)."""

        def for_session(
            persona: Persona, permission: Permission, info: SessionInfo
        ) -> ModelStarter:
            settings = self.settings
            profile = ModelProfile(
                model=settings.gemini.model,
                voice=settings.gemini.voice,
                language=settings.assistant.language,
                system_instruction=persona.system_instruction,
                function_declarations=self.tools.declarations(permission),
            )

            def start(
                session: pykka.ActorRef[Any],
                connection_id: int,
                handle: str | None,
                relay: AudioRelay,
            ) -> pykka.ActorRef[Any]:
                if self.model_client is None:
                    self.model_client = make_client(settings)
                return GeminiConnection.start(
                    session=session,
                    connection_id=connection_id,
                    profile=profile,
                    resumption_handle=handle,
                    client=self.model_client,
                    loop=self.io_loop,
                    log_fields={"call_sid": info.call_sid, "session": info.session_name},
                    relay=relay,
                )

            return start

        return for_session


def live_actor(actor_class: type[pykka.Actor]) -> Callable[[], pykka.ActorRef[Any] | None]:
    """A lookup of the live actor of a permanent child: after a restart it is a new one."""

    def lookup() -> pykka.ActorRef[Any] | None:
        refs = pykka.ActorRegistry.get_by_class(actor_class)
        return refs[0] if refs else None

    return lookup


def system_children(runtime: Runtime) -> list[ChildSpec]:
    """The permanent children of the root supervisor, in start order."""
    settings = runtime.settings
    monitor = settings.monitor
    shutdown_timeout = settings.supervision.shutdown_timeout_seconds
    return [
        ChildSpec(
            # First to start, last to stop: the heartbeat outlives the calls it vouches for.
            id="cluster",
            start=lambda: ClusterMember.start(
                store=runtime.store,
                membership=runtime.membership,
                timers=runtime.timers,
                draining=lambda: runtime.admission.draining,
                router=live_actor(Router),
                calls=live_actor(CallSupervisor),
                takers=(live_actor(Router), live_actor(ReminderScheduler), live_actor(Telephony)),
                take_up_goals=runtime.goals.take_up,
            ),
            shutdown_timeout=shutdown_timeout,
        ),
        ChildSpec(
            id="monitor",
            start=lambda: ActorMonitor.start(
                stats_interval=monitor.stats_interval_seconds,
                watchdog_seconds=monitor.watchdog_seconds,
                timers=runtime.timers,
                events=runtime.events,
            ),
            shutdown_timeout=shutdown_timeout,
        ),
        ChildSpec(
            id="telephony",
            start=lambda: Telephony.start(
                runtime.settings, store=runtime.store, outbox=runtime.outbox
            ),
            shutdown_timeout=shutdown_timeout,
        ),
        ChildSpec(
            id="router",
            start=lambda: Router.start(
                settings=runtime.settings,
                store=runtime.store,
                presence=runtime.switchboard.presence,
                telephony=live_actor(Telephony),
                timers=runtime.timers,
                me=live_actor(Router),
                texting=runtime.texting,
            ),
            shutdown_timeout=shutdown_timeout,
        ),
        ChildSpec(
            id="reminders",
            start=lambda: ReminderScheduler.start(
                settings=runtime.settings,
                store=runtime.store,
                timers=runtime.timers,
                switchboard=runtime.switchboard,
                telephony=live_actor(Telephony),
                me=live_actor(ReminderScheduler),
                boot=runtime.boot,
                # A stopping daemon leaves due reminders to the members that carry on.
                draining=lambda: runtime.admission.draining,
            ),
            shutdown_timeout=shutdown_timeout,
        ),
        ChildSpec(
            id="calls",
            start=lambda: CallSupervisor.start(
                settings=runtime.settings,
                store=runtime.store,
                timers=runtime.timers,
                tools=runtime.tools,
                admission=runtime.admission,
                pins=runtime.pins,
                model_starter=runtime.model_starter(),
                telephony=live_actor(Telephony),
                tool_pool=runtime.tool_pool,
                audio_loop=runtime.io_loop,
                events=runtime.events,
                switchboard=runtime.switchboard,
                goals=runtime.goals,
                reminders=live_actor(ReminderScheduler),
            ),
            # Its sessions each get their own timeout, in reverse start order.
            shutdown_timeout=None,
        ),
    ]
