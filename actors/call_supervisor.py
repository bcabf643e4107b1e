"""The CallSupervisor: admits calls, starts a CallSession per Media Stream, ends them once.

It is a :class:`Supervisor` whose children are temporary CallSessions keyed by call SID.
The server reaches it through :class:`CallHooks`: the voice webhook is admitted on a
thread-safe :class:`CallAdmission` and recorded with its stream token (on the server's worker
thread); everything else is a ``tell``. A stream starts a session only with a valid token,
and the session is who the token's record says.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import pykka
import structlog

from actors.call_session import CallSession, ModelStarter, OwnerUpgrade, StreamOpened
from actors.supervisor import Supervisor
from tars_actors.actor_messages import (
    CallFailed,
    CallNotAnswered,
    CallPlaced,
    CallSocket,
    CallStatusChanged,
    CallStreamStarted,
    EndWithNotice,
    Instruct,
    SettingsChanged,
)
from tars_actors.call.admission import CallAdmission, admission_limits
from tars_actors.call.flow import CallFlow
from tars_actors.call.hooks import FINAL_STATUSES, CallAdmitted
from tars_actors.call.limits import CallLimits
from tars_actors.call.owner_pin import KeypadPin
from tars_actors.call.permissions import Permission
from tars_actors.call.persona import Caller, Persona, owner_verified_turn, persona_for
from tars_actors.call.pin_desk import PinDesk
from tars_actors.call.records import caller_of, purpose_of
from tars_actors.call.session_info import SessionInfo
from tars_actors.call.standby import StandbySocket
from tars_actors.cluster.messages import StreamElsewhere
from tars_actors.cluster.presence import forward_status, wake_early_holder
from tars_actors.goals.desk import (
    FINAL_GOAL_STATUSES,
    GOAL_PREFIX,
    GoalDesk,
    goal_for_call,
    goal_status_for,
    mark_answered,
    mark_dialing,
    voicemail_note,
)
from tars_actors.messaging.routing import Switchboard
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.actor import ActorExit
from tars_actors.runtime.events import EventBus
from tars_actors.runtime.ratelimit import LogRateLimiter
from tars_actors.runtime.settings import Settings
from tars_actors.runtime.supervision import ChildSpec, Restart, Strategy, SupervisorFlags
from tars_actors.runtime.timers import Timers
from tars_actors.store import (
    AgentSession,
    GoalStatus,
    SessionStatus,
    Store,
    utcnow,
)
from tars_actors.telephony import stream_tokens
from tars_actors.telephony.stream_tokens import (
    TOKEN_PARAMETER,
    CallRecord,
    StreamRefusal,
)
from tars_actors.tools.registry import ToolRegistry
from tars_actors.transfer.messages import PlacedCallEnded

__all__ = [
    "CallAdmission",
    "CallSupervisor",
    "ModelStarterFactory",
    "admission_limits",
]

log = structlog.get_logger("tars.calls")

#: Builds the model starter of one session from its persona and permission level.
ModelStarterFactory = Callable[[Persona, Permission, SessionInfo], ModelStarter]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Early:
    """A session started before its stream: its ref, the standby it talks to, and the
    record it was started from (the stream's token must name the same)."""

    ref: pykka.ActorRef[Any]
    standby: StandbySocket
    record: CallRecord


class CallSupervisor(Supervisor):
    """Starts a CallSession for each stream, ends it on a final status, frees its place."""

    actor_kind = "CallSupervisor"

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        timers: Timers,
        tools: ToolRegistry,
        admission: CallAdmission,
        pins: PinDesk,
        model_starter: ModelStarterFactory,
        telephony: Callable[[], pykka.ActorRef[Any] | None],
        tool_pool: concurrent.futures.Executor,
        audio_loop: LoopThread,
        events: EventBus | None = None,
        switchboard: Switchboard | None = None,
        goals: GoalDesk | None = None,
        reminders: Callable[[], pykka.ActorRef[Any] | None] = lambda: None,
    ) -> None:
        super().__init__(
            "calls",
            # Sessions are temporary: one that fails is not restarted (the caller hung
            # up or will call again), so intensity never trips on calls.
            SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=1, period_seconds=5.0),
            timers=timers,
            events=events,
        )
        self._settings = settings
        self._store = store
        self._tools = tools
        self._admission = admission
        self._pins = pins
        self._model_starter = model_starter
        self._telephony = telephony
        self._tool_pool = tool_pool
        self._audio_loop = audio_loop
        self._session_timers = timers
        self._switchboard = switchboard
        self._goals = goals
        # Refused streams are logged once per address and reason, then counted: a peer that
        # replays a captured upgrade must not be able to flood the log.
        self._refusals = LogRateLimiter()
        self._reminders = reminders
        # Goal calls that reached an answering machine: they end as "voicemail".
        self._voicemail: set[str] = set()
        #: Calls started here whose stream opened on another daemon.
        self._elsewhere: set[str] = set()
        # Calls whose stream started or that ended without one (the latest 4096): their
        # final status is no news.
        self._answered: dict[str, None] = {}
        # Sessions started before their stream (at the webhook), by call SID, until it opens.
        self._early: dict[str, _Early] = {}

    def on_start(self) -> None:
        self._store.connect()
        super().on_start()

    def on_stop(self) -> None:
        self._stop_calls(super().on_stop)
        self._store.close()

    def on_failure(self, *exc_info: Any) -> None:
        self._stop_calls(lambda: super(CallSupervisor, self).on_failure(*exc_info))

    def _stop_calls(self, stop: Callable[[], None]) -> None:
        """Stop the sessions and give their places back: their exits will not reach this
        supervisor, and a restarted one must find the line as free as it is."""
        calls = [info.id for info in self.which_children()]
        stop()
        for call_sid in calls:
            self._admission.release(call_sid)
        self._early.clear()

    def on_receive(self, message: Any) -> Any:
        match message:
            case CallStreamStarted():
                try:
                    self._stream_started(message)
                except Exception:
                    # One call that cannot start (its database row, say) must not take
                    # this supervisor, and every other call with it, down.
                    call_sid = message.start.call_sid
                    log.exception("calls.stream_start_failed", call_sid=call_sid)
                    if self._child(call_sid) is None:
                        self._admission.release(call_sid)
                    message.socket.close()
            case CallAdmitted(record=record) if record.call_sid:
                self._open_safely(record.call_sid, record)
            case CallStatusChanged():
                self._status_changed(message)
            case ActorExit(child_id=child_id):
                super().on_receive(message)
                if child_id not in {info.id for info in self.which_children()}:
                    self._child_ended(child_id)
            case StreamElsewhere(call_sid=call_sid) if call_sid in self._early:
                # Its stream opened on another daemon, which runs the call (and its goal).
                del self._early[call_sid]
                self._elsewhere.add(call_sid)
                self._settled(call_sid)
                self._tell_session(call_sid, message)
            case SettingsChanged(settings=settings):
                self._settings = settings
                log.info("calls.settings_changed")
            case EndWithNotice(call_sid=str(call_sid)):
                log.warning("calls.place_taken", call_sid=call_sid, reason=message.reason)
                self._tell_session(call_sid, message)
            case EndWithNotice():
                refs = [info.ref for info in self.which_children() if info.ref is not None]
                log.info("calls.ending_all", calls=len(refs), reason=message.reason)
                for ref in refs:
                    with contextlib.suppress(pykka.ActorDeadError):
                        ref.tell(message)
            case CallPlaced(correlation_id=cid, call_sid=call_sid) if cid.startswith(GOAL_PREFIX):
                mark_dialing(self._store, int(cid.removeprefix(GOAL_PREFIX)), call_sid)
            case CallFailed(correlation_id=cid, error=error) if cid.startswith(GOAL_PREFIX):
                if self._goals is not None:
                    goal_id = int(cid.removeprefix(GOAL_PREFIX))
                    self._goals.ended(goal_id, GoalStatus.FAILED, error=error)
            case _:
                return super().on_receive(message)
        return None

    def _child_ended(self, call_sid: str) -> None:
        self._admission.release(call_sid)
        if self._early.pop(call_sid, None) is not None:
            # Its stream never opened: nobody was there to talk to.
            self._not_answered(call_sid, "no-answer")
        elif call_sid in self._elsewhere:
            self._elsewhere.discard(call_sid)
        else:
            voicemail = call_sid in self._voicemail
            self._voicemail.discard(call_sid)
            self._goal_ended(call_sid, GoalStatus.VOICEMAIL if voicemail else GoalStatus.COMPLETED)

    def _status_changed(self, message: CallStatusChanged) -> None:
        call_sid, status = message.call_sid, message.status
        if self._elsewhere_call(message):
            return
        if message.answered_by is not None:
            self._answered_by(call_sid, message.answered_by)
        elif status == "in-progress" and self._child(call_sid) is None:
            # A call TARS placed was answered: its stream follows in about a second.
            self._open_safely(call_sid, None)
        told = status in FINAL_STATUSES and self._tell_session(call_sid, message)
        if status in FINAL_STATUSES and not told and call_sid not in self._answered:
            # The call ended before its stream started: free its place now.
            self._admission.release(call_sid)
            self._not_answered(call_sid, status)

    def _elsewhere_call(self, message: CallStatusChanged) -> bool:
        """A final status or a machine's answer for a call another member runs or placed
        goes to that member, whose session, reminder, goal or transfer it concerns."""
        call_sid = message.call_sid
        if message.forwarded or (
            message.status not in FINAL_STATUSES and message.answered_by is None
        ):
            return False
        if self._child(call_sid) is not None or call_sid in self._answered:
            return False
        status, answered_by = message.status, message.answered_by
        to = forward_status(self._store, call_sid, status, message.duration_seconds, answered_by)
        if to is not None:
            log.info("calls.status_forwarded", call_sid=call_sid, status=status, daemon=to)
        return to is not None

    def _not_answered(self, call_sid: str, status: str) -> None:
        """A call ended without a conversation: its goal, reminder or transfer hears so,
        once (a final status coming later is no news)."""
        self._settled(call_sid)
        self._goal_ended(call_sid, goal_status_for(status) or GoalStatus.FAILED)
        self._tell_reminders(CallNotAnswered(call_sid=call_sid, status=status))
        if self._switchboard is not None:  # a screening call the owner missed
            self._switchboard.tell(PlacedCallEnded(call_sid=call_sid, status=status))

    def _settled(self, call_sid: str) -> None:
        self._answered[call_sid] = None
        if len(self._answered) > 4096:  # a day of calls and more
            del self._answered[next(iter(self._answered))]

    def _answered_by(self, call_sid: str, answered_by: str) -> None:
        """Asynchronous answering-machine detection: a machine gets a short message."""
        log.info("calls.answered_by", call_sid=call_sid, answered_by=answered_by)
        note = voicemail_note(answered_by, call_sid)
        if note is not None:
            self._voicemail.add(call_sid)
            self._tell_session(call_sid, Instruct(text=note))

    def _tell_reminders(self, message: CallNotAnswered) -> None:
        ref = self._reminders()
        if ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

    def _goal_ended(self, call_sid: str, status: GoalStatus) -> None:
        if self._goals is None:
            return
        goal = goal_for_call(call_sid)
        if goal is not None and goal.status not in FINAL_GOAL_STATUSES:
            self._goals.ended(goal.id, status)

    def _tell_session(self, call_sid: str, message: object) -> bool:
        """Tell the call's session, if it has one; whether it had."""
        for info in self.which_children():
            if info.id == call_sid and info.ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    info.ref.tell(message)
                return True
        return False

    def _stream_started(self, message: CallStreamStarted) -> None:
        start = message.start
        call_sid = start.call_sid
        early = self._early.get(call_sid)
        if early is None and (self._admission.is_live(call_sid) or self._child(call_sid)):
            # Not this stream's call to take: the live one keeps its place, row and session.
            self._refuse(message, StreamRefusal.LIVE_CALL)
            return
        record = stream_tokens.redeem(
            self._store,
            start.custom_parameters.get(TOKEN_PARAMETER, ""),
            call_sid=call_sid,
            account_sid=start.account_sid,
            account=self._settings.secrets.twilio_account_sid,
        )
        if isinstance(record, StreamRefusal):
            self._refuse(message, record)
            return
        if early is not None:
            self._hand_over(early, record, message)
            return
        # Answered by another daemon, which may have started it at the webhook: it gives up.
        wake_early_holder(self._store, call_sid)
        self._open(record, message.socket)

    def _hand_over(self, early: _Early, record: CallRecord, message: CallStreamStarted) -> None:
        """The stream of a call whose session started at its webhook: to that session."""
        call_sid = message.start.call_sid
        if record != early.record:  # another token of the call, saying something else
            self._refuse(message, StreamRefusal.OTHER_CALL)
            return
        if not early.standby.offer(message.socket):
            # Its session gave up waiting a moment ago: the call is over on TARS's side.
            self._refuse(message, StreamRefusal.CALL_ENDED)
            return
        del self._early[call_sid]
        self._settled(call_sid)
        try:
            early.ref.tell(StreamOpened(socket=message.socket))
        except pykka.ActorDeadError:
            early.standby.close()  # closes the stream it was offered

    def _open_safely(self, call_sid: str, record: CallRecord | None) -> None:
        """Start a call's session and model connection before its stream opens: at the
        signed voice webhook (``record``), or when a call TARS placed is answered (its
        record is read). The stream's ``start`` must still bring the call's token; until
        then the greeting waits in a standby."""
        try:
            record = record or stream_tokens.placed_record(self._store, call_sid)
            if record is None or self._child(call_sid) is not None:
                return  # not a call TARS placed, a webhook Twilio retried, or a late status
            standby = StandbySocket()
            ref = self._open(record, standby)
            if ref is not None:
                self._early[call_sid] = _Early(ref=ref, standby=standby, record=record)
        except Exception:
            # Its stream, when it comes, starts the call the usual way.
            log.exception("calls.early_start_failed", call_sid=call_sid)

    def _open(self, record: CallRecord, socket: CallSocket) -> pykka.ActorRef[Any] | None:
        """Start the session of a call whose record is proven (by its token, or by the
        webhook that just recorded it); its ref, or None when it could not start."""
        call_sid = record.call_sid or ""
        caller = caller_of(self._settings, record, self._pins)
        owner = caller.permission in (Permission.OWNER, Permission.SCREENING) or caller.pin_pending
        early = isinstance(socket, StandbySocket)
        if not self._admission.activate(
            call_sid,
            caller.number,
            owner=owner,
            pending=caller.pin_pending,
            # At its webhook a call takes the place the webhook reserved, or none: one
            # given up to the owner, or freed by the call's end, stays so.
            reserved_only=early and not record.outbound,
        ):
            if isinstance(socket, StandbySocket):
                return None  # its stream, when it comes, is refused the usual way
            self._refuse_socket(socket, call_sid, StreamRefusal.OVER_CAPACITY)
            return None
        persona = persona_for(self._settings, caller)
        with self._store.transaction():
            row = AgentSession.create(
                name=persona.session_name,
                call_sid=call_sid,
                stream_sid=socket.stream_sid or None,
                phone_number=caller.number,
                permission=str(caller.permission),
                status=SessionStatus.PENDING,
                purpose=purpose_of(caller),
                direction="outbound" if record.outbound else "inbound",
                started_at=utcnow(),
                daemon_id=self._store.daemon_id,
            )
        info = SessionInfo(
            session_id=int(row.id),
            session_name=persona.session_name,
            permission=caller.permission,
            caller_number=caller.number,
            call_sid=call_sid,
            stream_sid=socket.stream_sid,
            direction=str(row.direction),
            purpose=purpose_of(caller),
            pin_pending=caller.pin_pending,
            screening=None if caller.screening is None else caller.screening.transfer_id,
        )
        if caller.goal_id is not None:
            mark_answered(self._store, caller.goal_id, call_sid=call_sid, session_id=int(row.id))
        upgrade = self._owner_upgrade(caller, info)
        flow = CallFlow(
            permission=caller.permission,
            greeting=persona.greeting,
            tools=self._tools,
            limits=CallLimits(
                max_call_seconds=float(self._settings.sessions.max_call_seconds),
                model_unreachable_seconds=self._settings.sessions.model_unreachable_seconds,
            ),
            pin=None if upgrade is None else upgrade[1],
            screening=info.screening,
        )
        starter = self._model_starter(persona, caller.permission, info)
        spec = ChildSpec(
            id=call_sid,
            start=lambda: CallSession.start(
                info=info,
                flow=flow,
                socket=socket,
                store=self._store,
                timers=self._session_timers,
                start_model=starter,
                telephony=self._telephony,
                tool_pool=self._tool_pool,
                audio_loop=self._audio_loop,
                switchboard=self._switchboard,
                owner_upgrade=None if upgrade is None else upgrade[0],
            ),
            restart=Restart.TEMPORARY,
            shutdown_timeout=self._settings.supervision.shutdown_timeout_seconds,
        )
        try:
            ref: pykka.ActorRef[Any] = self.start_child(spec)
        except Exception:
            log.exception("calls.session_start_failed", call_sid=call_sid)
            self._admission.release(call_sid)
            socket.close()
            with self._store.transaction():
                AgentSession.update(
                    status=SessionStatus.ENDED, ended_at=utcnow(), end_reason="start failed"
                ).where(AgentSession.id == row.id).execute()
            return None
        if not early:
            self._settled(call_sid)
        return ref

    def _owner_upgrade(
        self, caller: Caller, info: SessionInfo
    ) -> tuple[OwnerUpgrade, KeypadPin] | None:
        """For a call from the owner's number that is still to type the PIN: what it
        becomes once the PIN is right, and the keypad that takes the PIN."""
        if not caller.pin_pending:
            return None
        settings = self._settings
        persona = persona_for(settings, Caller(number=caller.number, permission=Permission.OWNER))
        owner_info = dataclasses.replace(
            info,
            session_name=persona.session_name,
            permission=Permission.OWNER,
            pin_pending=False,
        )
        upgrade = OwnerUpgrade(
            info=owner_info,
            start_model=self._model_starter(persona, Permission.OWNER, owner_info),
            pins=self._pins,
            admission=self._admission,
        )
        keypad = KeypadPin(
            owner_greeting=persona.greeting, verified_turn=owner_verified_turn(settings)
        )
        return upgrade, keypad

    def _child(self, call_sid: str) -> Any:
        for info in self.which_children():
            if info.id == call_sid:
                return info
        return None

    def _refuse(self, message: CallStreamStarted, why: StreamRefusal) -> None:
        """Close a stream that may not start a call, before any session or model."""
        self._refuse_socket(message.socket, message.start.call_sid, why)

    def _refuse_socket(self, socket: CallSocket, call_sid: str, why: StreamRefusal) -> None:
        suppressed = self._refusals.allow((str(why), socket.host))
        if suppressed is not None:
            log.warning(
                "calls.stream_refused",
                why=str(why),
                call_sid=call_sid,
                remote=socket.remote,
                suppressed=suppressed,
            )
        socket.close()
