"""The Router: routes messages between live calls and to the owner, and records each outcome.

A permanent child of the root supervisor. Who is live is kept in the runtime's
:class:`~tars_actors.messaging.routing.Presence`, so a restarted Router knows every call at
once; what was sent is kept in the :class:`~tars_actors.messaging.ledger.MessageLedger`, so a
restarted Router (or daemon) delivers what was never delivered, and nothing twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from types import TracebackType
from typing import Any

import pykka
import structlog

from tars_actors.actor_messages import (
    CallFailed,
    CallPlaced,
    CallRedirected,
    Instruct,
    RedirectFailed,
    SendSms,
    SmsFailed,
    SmsSent,
)
from tars_actors.call.permissions import Permission
from tars_actors.cluster.messages import TakeUp
from tars_actors.cluster.wakeup import WakeKind, wake
from tars_actors.messaging.ledger import (
    MAX_BODY_CHARS,
    ApprovalRecord,
    LedgerError,
    MessageLedger,
    MessageRecord,
)
from tars_actors.messaging.routing import (
    BROADCAST_TARGET,
    OWNER_TARGET,
    DecideBroadcast,
    Deliver,
    DeliverNote,
    Dispatch,
    Fail,
    LiveSession,
    MessageType,
    Presence,
    Queue,
    Route,
    RouteReply,
    SessionJoined,
    SessionLeft,
    Text,
    UnknownTarget,
    clip,
    note_text,
    plan_delivery,
    resolve_target,
    sms_text,
)
from tars_actors.runtime.actor import TarsActor
from tars_actors.runtime.settings import Settings
from tars_actors.runtime.timers import Timers
from tars_actors.store import ApprovalStatus, MessageStatus, Store
from tars_actors.transfer.messages import (
    SCREENING_PREFIX,
    AskTransfer,
    ConnectCall,
    DecideTransfer,
    PlacedCallEnded,
    TransferDeadline,
    TransferReply,
)
from tars_actors.transfer.switch import TransferSwitch

__all__ = ["Router"]

log = structlog.get_logger("tars.router")

_SMS_PREFIX = "message-"


class Router(TarsActor):
    """Routes :class:`Route` requests, hands notes to sessions, texts the owner."""

    actor_kind = "Router"

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        presence: Presence,
        telephony: Callable[[], pykka.ActorRef[Any] | None],
        timers: Timers,
        me: Callable[[], pykka.ActorRef[Any] | None] | None = None,
        texting: set[int] | None = None,
    ) -> None:
        """``me`` finds the live Router, so that Telephony's replies reach a restarted one;
        ``texting`` (kept by the runtime across restarts) holds the messages whose SMS is on
        its way in this run of the daemon, which a restarted Router must not send again."""
        super().__init__()
        self._me = me
        self._texting = texting if texting is not None else set()
        self._settings = settings
        self._store = store
        self._ledger = MessageLedger(store)
        self._presence = presence
        self._telephony = telephony
        self._transfers = TransferSwitch(
            settings=settings,
            store=store,
            # Transfers connect calls of this daemon (a call's actor is told what to do).
            presence=presence.local_view(),
            timers=timers,
            telephony=telephony,
            router=me or (lambda: self.actor_ref),
            note=self._note_to_session,
            notify_owner=self._transfer_notice,
        )

    def on_start(self) -> None:
        self._store.connect()
        # What this daemon held before this Router started (a restarted Router's notes in
        # its calls' hands, which refuse one twice; SMS on their way are in ``texting``).
        self._ledger.release_held(keep=self._texting)
        self._recover("start")
        unsettled = self._transfers.recover()
        if unsettled:
            log.info("router.transfers_recovered", transfers=unsettled)

    def on_stop(self) -> None:
        self._transfers.close()
        self._store.close()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._transfers.close()

    # --- messages -----------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        match message:
            case Route() | DecideBroadcast():
                return self._answer(message)
            case AskTransfer() | DecideTransfer() | ConnectCall():
                return self._transfer(message)
            case TransferDeadline():
                self._transfers.deadline(message)
            case CallPlaced() | CallFailed() if message.correlation_id.startswith(SCREENING_PREFIX):
                self._transfers.placed(message)
            case CallRedirected() | RedirectFailed():
                self._transfers.redirected(message)
            case PlacedCallEnded(call_sid=call_sid, status=status):
                self._transfers.call_ended(call_sid, status)
            case TakeUp(reason=reason):
                self._recover(reason)
            case Dispatch(message_id=recorded, woken=woken):
                record = self._ledger.get(recorded)
                if record.status in (MessageStatus.PENDING, MessageStatus.QUEUED):
                    self._dispatch(record, forward=not woken)
            case SessionJoined(session_id=session_id):
                self._joined(session_id)
            case SessionLeft(session_id=session_id, undelivered=undelivered):
                self._left(session_id, undelivered)
                self._transfers.left(session_id)
            case SmsSent(correlation_id=correlation_id, message_sid=sid):
                sent_id = _message_id(correlation_id)
                if sent_id is not None:
                    self._texting.discard(sent_id)
                    self._ledger.settle(sent_id, MessageStatus.SMS_SENT)
                    log.info("router.sms_sent", message_id=sent_id, message_sid=sid)
            case SmsFailed(correlation_id=correlation_id, error=error, code=code):
                failed_id = _message_id(correlation_id)
                if failed_id is not None:
                    self._texting.discard(failed_id)
                    self._ledger.settle(failed_id, MessageStatus.FAILED, error=f"SMS: {error}")
                    log.error("router.sms_failed", message_id=failed_id, error=error, code=code)
            case _:
                return super().on_receive(message)
        return None

    # --- transfers ------------------------------------------------------------------------

    def _transfer(self, request: AskTransfer | DecideTransfer | ConnectCall) -> TransferReply:
        try:
            match request:
                case AskTransfer():
                    reply = self._transfers.ask(request)
                case DecideTransfer():
                    reply = self._transfers.decide(request)
                case ConnectCall():
                    reply = self._transfers.connect(request)
        except Exception as error:
            log.exception("router.transfer_failed", request=type(request).__name__)
            reply = TransferReply(ok=False, detail=f"the transfer could not be recorded: {error}")
        if isinstance(request, DecideTransfer) and request.reply_to is not None:
            # Decided on a screening call's keypad: its model hears what came of it.
            key = "1 (take it)" if request.accept else "2 (not now)"
            outcome = reply.detail if reply.ok else f"It could not be done: {reply.detail}."
            with contextlib.suppress(pykka.ActorDeadError):
                request.reply_to.tell(
                    Instruct(text=f"[System note] The keypad answered {key}. {outcome}")
                )
        return reply

    def _transfer_notice(self, text: str) -> None:
        self._notify_owner(
            text, MessageType.NOTIFICATION, sender_session_id=None, sender_name="TARS"
        )

    def _note_to_session(self, session_id: int, text: str) -> bool:
        """A note from TARS for one live session, recorded and delivered at its next turn
        boundary; False when the session is not live."""
        session = self._presence.get(session_id)
        if session is None:
            return False
        record = self._ledger.record(
            sender_session_id=None,
            sender_name="TARS",
            target=session.name,
            target_session_id=session_id,
            message_type=MessageType.TRANSFER,
            body=clip(text, MAX_BODY_CHARS),
        )
        self._dispatch(record)
        return True

    # --- routing --------------------------------------------------------------------------

    def _answer(self, request: Route | DecideBroadcast) -> RouteReply:
        try:
            if isinstance(request, Route):
                return self._route(request)
            return self._decide(request)
        except Exception as error:
            # A request this Router cannot carry out (a database error, say) gets an
            # error answer; its transaction left nothing half-written.
            log.exception("router.request_failed", request=type(request).__name__)
            return RouteReply(ok=False, detail=f"the message could not be recorded: {error}")

    def _route(self, request: Route) -> RouteReply:
        # Columns of 100 characters: a caller's name plus a session name can run longer.
        request = replace(request, sender_name=clip(request.sender_name, 100))
        try:
            body = MessageLedger.check_body(request.body)
        except LedgerError as error:
            log.warning("router.rejected", why=error.kind, sender=request.sender_name)
            return RouteReply(ok=False, detail=str(error))
        target = request.target.strip()
        if target.casefold() in (OWNER_TARGET, "owner"):
            record = self._ledger.record(
                sender_session_id=request.sender_session_id,
                sender_name=request.sender_name,
                target=OWNER_TARGET,
                message_type=request.message_type,
                body=body,
            )
            log.info("router.recorded", message_id=record.id, target=OWNER_TARGET)
            return self._reply(self._dispatch(record), record)
        if target.casefold() == BROADCAST_TARGET:
            return self._broadcast(request, body)
        resolved = resolve_target(self._presence, target)
        if isinstance(resolved, UnknownTarget):
            log.warning("router.unknown_target", target=target, sender=request.sender_name)
            return RouteReply(ok=False, detail=resolved.message)
        if resolved.session_id == request.sender_session_id:
            return RouteReply(ok=False, detail="that is this call; pick another session")
        record = self._ledger.record(
            sender_session_id=request.sender_session_id,
            sender_name=request.sender_name,
            target=target,
            target_session_id=resolved.session_id,
            message_type=request.message_type,
            body=body,
        )
        log.info("router.recorded", message_id=record.id, target=resolved.name)
        return self._reply(self._dispatch(record), record)

    def _broadcast(self, request: Route, body: str) -> RouteReply:
        if request.sender_permission is not Permission.OWNER:
            approval, record = self._ledger.request_approval(
                requester_session_id=request.sender_session_id,
                requester_name=request.sender_name,
                body=body,
            )
            log.info("router.approval_requested", approval_id=approval.id, message_id=record.id)
            self._notify_owner(
                # The body is the requester's own words, marked so: each reader quotes it.
                f"{request.sender_name} asks to broadcast to every call: {body}\n"
                f"Approval id {approval.id}: approve or deny it with decide_broadcast.",
                MessageType.APPROVAL_REQUEST,
                sender_session_id=request.sender_session_id,
                sender_name=request.sender_name,
            )
            return RouteReply(
                ok=True,
                detail=f"{self._owner_name} has been asked to approve the broadcast",
                message_ids=(record.id,),
                status=str(record.status),
                approval_id=approval.id,
            )
        targets = [s for s in self._presence.all() if s.session_id != request.sender_session_id]
        if not targets:
            return RouteReply(ok=False, detail="there are no other live calls to broadcast to")
        records = self._fan_out(
            sender_session_id=request.sender_session_id,
            sender_name=request.sender_name,
            body=body,
            targets=targets,
        )
        return RouteReply(
            ok=True,
            detail=f"broadcast to {len(records)} live call(s): "
            + ", ".join(s.name for s in targets),
            message_ids=tuple(r.id for r in records),
            status=str(MessageStatus.PENDING),
        )

    def _fan_out(
        self,
        *,
        sender_session_id: int | None,
        sender_name: str,
        body: str,
        targets: list[LiveSession],
        approval_id: int | None = None,
        dispatch: bool = True,
    ) -> list[MessageRecord]:
        records = self._ledger.record_many(
            sender_session_id=sender_session_id,
            sender_name=sender_name,
            target=BROADCAST_TARGET,
            message_type=MessageType.BROADCAST,
            body=body,
            target_session_ids=[s.session_id for s in targets],
            approval_id=approval_id,
        )
        log.info("router.broadcast", messages=len(records), approval_id=approval_id)
        if dispatch:
            for record in records:
                self._dispatch(record)
        return records

    def _decide(self, request: DecideBroadcast) -> RouteReply:
        try:
            # The decision and the copies for the calls live now in one transaction: another
            # member's sweep never finds an approval without its copies, to write them twice.
            with self._store.transaction():
                approval, records = self._ledger.decide(
                    request.approval_id, approve=request.approve
                )
                delivered = self._approved_copies(approval, request.decider_session_id)
        except LedgerError as error:
            log.warning("router.decision_rejected", approval_id=request.approval_id, why=error.kind)
            return RouteReply(ok=False, detail=str(error))
        log.info("router.decided", approval_id=approval.id, status=str(approval.status))
        requester_id = approval.requester_session_id
        requester = self._presence.get(requester_id) if requester_id is not None else None
        if not request.approve:
            if requester is not None:
                self._tell_requester(requester, "declined your request to broadcast")
            return RouteReply(ok=True, detail="the broadcast was denied", approval_id=approval.id)
        for record in delivered:
            self._dispatch(record)
        for record in records:
            self._ledger.settle(record.id, MessageStatus.DELIVERED)
        if requester is not None:
            self._tell_requester(requester, "approved your broadcast")
        return RouteReply(
            ok=True,
            detail=f"approved: broadcast to {len(delivered)} live call(s)",
            message_ids=tuple(r.id for r in delivered),
            approval_id=approval.id,
        )

    def _approved_copies(
        self, approval: ApprovalRecord, decider_session_id: int | None
    ) -> list[MessageRecord]:
        """The copies of an approved broadcast for the calls live now, written (not yet
        dispatched); none for a denied one."""
        if approval.status != ApprovalStatus.APPROVED:
            return []
        excluded = {approval.requester_session_id, decider_session_id}
        targets = [s for s in self._presence.all() if s.session_id not in excluded]
        return self._fan_out(
            sender_session_id=approval.requester_session_id,
            sender_name=approval.requester_name,
            body=approval.body,
            targets=targets,
            approval_id=approval.id,
            dispatch=False,
        )

    def _tell_requester(self, requester: LiveSession, what: str) -> None:
        record = self._ledger.record(
            sender_session_id=None,
            sender_name=self._owner_name,
            target=str(requester.session_id),
            target_session_id=requester.session_id,
            message_type=MessageType.NOTE,
            body=f"{self._owner_name} {what}.",
        )
        self._dispatch(record)

    def _notify_owner(
        self,
        body: str,
        message_type: str,
        *,
        sender_session_id: int | None,
        sender_name: str,
    ) -> None:
        record = self._ledger.record(
            sender_session_id=sender_session_id,
            sender_name=sender_name,
            target=OWNER_TARGET,
            message_type=message_type,
            body=body,
        )
        self._dispatch(record)

    # --- delivery -------------------------------------------------------------------------

    def _dispatch(
        self, record: MessageRecord, *, forward: bool = True
    ) -> Deliver | Text | Queue | Fail:
        """Start delivering ``record`` as things are now; returns the plan it followed.
        ``forward``: a call on another member may be woken for it."""
        plan = plan_delivery(record, self._presence)
        match plan:
            case Deliver(session=session) if session.daemon_id is not None and not forward:
                log.warning(
                    "router.woken_for_another",
                    message_id=record.id,
                    session=session.name,
                    daemon=session.daemon_id,
                )
            case Deliver(session=session) if session.daemon_id is not None:
                # The call is on another member: the row is the message; wake that one.
                try:
                    wake(self._store, session.daemon_id, WakeKind.MESSAGE, str(record.id))
                except Exception:  # the sweep on that member finds it all the same
                    log.exception("router.wake_failed", message_id=record.id)
                else:
                    log.info(
                        "router.handed_to_member",
                        message_id=record.id,
                        session=session.name,
                        daemon=session.daemon_id,
                    )
            case Deliver(session=session):
                attempt = self._ledger.begin_attempt(record.id)
                if attempt is None:
                    return plan  # settled meanwhile: never shown twice
                try:
                    session.ref.tell(DeliverNote(message_id=record.id, text=note_text(record)))
                except pykka.ActorDeadError:
                    # Ending as we speak: it will not say SessionLeft for this one, nor give
                    # the message back; it is free again, to go another way.
                    self._presence.leave(session.session_id)
                    self._ledger.requeue(record.id)
                    return self._dispatch(record)
                log.info("router.handed_to_call", message_id=record.id, session=session.name)
            case Text():
                self._text_owner(record)
            case Queue():
                self._ledger.settle(record.id, MessageStatus.QUEUED)
                log.info("router.queued", message_id=record.id)
            case Fail(error=error):
                self._ledger.settle(record.id, MessageStatus.FAILED, error=error)
                log.warning("router.failed", message_id=record.id, error=error)
        return plan

    def _text_owner(self, record: MessageRecord) -> None:
        if record.id in self._texting:
            return  # sent by this Router's predecessor; its outcome comes here
        if self._ledger.begin_attempt(record.id) is None:
            return
        telephony = self._telephony()
        if telephony is None:
            self._ledger.settle(
                record.id, MessageStatus.FAILED, error="SMS: the telephony actor is not running"
            )
            log.error("router.sms_failed", message_id=record.id, error="telephony not running")
            return
        telephony.tell(
            SendSms(
                to=self._settings.owner.phone,
                body=sms_text(record, self._settings.assistant.name),
                reply_to=self._me or self.actor_ref,
                correlation_id=f"{_SMS_PREFIX}{record.id}",
            )
        )
        self._texting.add(record.id)
        log.info("router.texting_owner", message_id=record.id)

    def _reply(self, plan: Deliver | Text | Queue | Fail, record: MessageRecord) -> RouteReply:
        owner = self._owner_name
        match plan:
            case Deliver(session=session) if session.is_owner and record.target == OWNER_TARGET:
                detail = f"passed on to {owner}, who is on a call and hears it at the next pause"
            case Deliver(session=session):
                detail = f'passed on to "{session.name}" at its next pause'
            case Text():
                detail = f"{owner} is not on a call; the message was sent by text message"
            case Queue():
                detail = f"kept for {owner}'s next call"
            case Fail(error=error):
                return RouteReply(ok=False, detail=error, message_ids=(record.id,), status="failed")
        return RouteReply(ok=True, detail=detail, message_ids=(record.id,), status="pending")

    # --- sessions coming and going -----------------------------------------------------------

    def _joined(self, session_id: int) -> None:
        session = self._presence.get(session_id)
        if session is None:
            return
        self._transfers.joined(session)
        if session.is_owner and self._presence.owner_main() == session:
            for record in self._ledger.queued_for_owner():
                if record.target == OWNER_TARGET:
                    self._dispatch(record)
        elif session.permission is Permission.UNKNOWN and not session.info.pin_pending:
            self._notify_owner(
                f"Incoming call from {session.name}",
                MessageType.NOTIFICATION,
                sender_session_id=session.session_id,
                sender_name=session.name,
            )

    def _left(self, session_id: int, undelivered: Iterable[int]) -> None:
        self._presence.leave(session_id)
        for message_id in undelivered:
            if self._ledger.requeue(message_id):
                record = self._ledger.get(message_id)
                log.info("router.rerouting", message_id=message_id, from_session=session_id)
                self._dispatch(record)

    def _recover(self, reason: str) -> None:
        """After a restart, when a member is gone, and at each sweep: deliver what no live
        daemon holds, and finish approved broadcasts."""
        pending = self._ledger.undelivered()
        for record in pending:
            self._dispatch(record)
        owner = self._presence.local_owner_main()
        if owner is not None and reason != "start" and self._presence.owner_main() == owner:
            # Queued for the owner while their call (here) was joining on another member's
            # view: it is delivered now rather than at the owner's next call.
            for queued in self._ledger.queued_for_owner():
                if queued.target == OWNER_TARGET:
                    self._dispatch(queued)
        for original in self._ledger.approved_undelivered():
            # Approved and copied, then stopped before the original was settled (a database
            # written before the decision and its copies were one transaction may also lack
            # the copies: they are written now, once, for the calls live now).
            approval_id = original.approval_id
            copies: list[MessageRecord] = []
            with self._store.transaction():
                if self._ledger.settle(original.id, MessageStatus.DELIVERED) and (
                    approval_id is not None and not self._ledger.broadcast_copies(approval_id)
                ):
                    targets = [
                        s
                        for s in self._presence.all()
                        if s.session_id != original.sender_session_id
                    ]
                    copies = self._fan_out(
                        sender_session_id=original.sender_session_id,
                        sender_name=original.sender_name,
                        body=original.body,
                        targets=targets,
                        approval_id=approval_id,
                        dispatch=False,
                    )
            for copy in copies:
                self._dispatch(copy)
        if pending:
            log.info("router.recovered", messages=len(pending), reason=reason)

    @property
    def _owner_name(self) -> str:
        return self._settings.owner.name


def _message_id(correlation_id: str) -> int | None:
    if not correlation_id.startswith(_SMS_PREFIX):
        return None
    with contextlib.suppress(ValueError):
        return int(correlation_id.removeprefix(_SMS_PREFIX))
    return None
