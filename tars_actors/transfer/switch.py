"""Putting calls through, for the Router: a caller's request asked of the owner (in their
live call, or by a screening call to their phone), the owner's decision, the deadlines, and
what Twilio and the calls report; the :class:`~tars_actors.transfer.bridge.Bridge` joins
the calls once the owner said yes.

A transfer's state lives in its ``transfers`` row (:class:`TransferDesk`), so a restarted
Router (or daemon) takes every unsettled one up again (:meth:`TransferSwitch.recover`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pykka
import structlog

from tars_actors.actor_messages import (
    CallFailed,
    CallPlaced,
    CallRedirected,
    Instruct,
    PlaceCall,
    RedirectFailed,
)
from tars_actors.call.caller_words import label
from tars_actors.messaging.routing import LiveSession, Presence
from tars_actors.runtime.settings import Settings
from tars_actors.runtime.timers import TimerHandle, Timers
from tars_actors.store import E164_PATTERN, Contact, Store, TransferKind, TransferStatus, utcnow
from tars_actors.telephony import stream_tokens
from tars_actors.telephony.twiml import STATUS_PATH, connect_twiml, stream_url
from tars_actors.transfer.bridge import Bridge
from tars_actors.transfer.desk import OPEN_STATUSES, TransferDesk, TransferRecord
from tars_actors.transfer.lines import Lines
from tars_actors.transfer.messages import (
    ASK_AGAIN_AFTER,
    DECIDE_SECONDS,
    DIAL_SECONDS,
    SCREENING_CALL_LIMIT,
    SCREENING_PREFIX,
    AskTransfer,
    ConnectCall,
    DecideTransfer,
    TransferDeadline,
    TransferReply,
)

__all__ = ["TransferSwitch"]

log = structlog.get_logger("tars.transfer")


class TransferSwitch:
    """The Router's transfers; every method runs on the Router's thread."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        presence: Presence,
        timers: Timers,
        telephony: Callable[[], pykka.ActorRef[Any] | None],
        router: Callable[[], pykka.ActorRef[Any] | None],
        note: Callable[[int, str], bool],
        notify_owner: Callable[[str], None],
    ) -> None:
        """``note(session_id, text)`` records a note for a live session and delivers it
        at its next turn boundary (False: the session is gone); ``notify_owner(text)`` one
        for the owner, wherever they are."""
        self._lines = Lines(
            settings=settings,
            store=store,
            desk=TransferDesk(store),
            presence=presence,
            telephony=telephony,
            router=router,
            note=note,
            notify_owner=notify_owner,
        )
        self._bridge = Bridge(self._lines)
        self._timers = timers
        self._deadlines: dict[int, TimerHandle] = {}

    # --- requests -------------------------------------------------------------------------

    def ask(self, request: AskTransfer) -> TransferReply:
        session = self._lines.presence.get(request.session_id)
        if session is None:
            return TransferReply(ok=False, detail="this call is no longer live")
        if session.is_owner:
            return TransferReply(
                ok=False, detail=f"you are talking with {self._lines.owner} already"
            )
        earlier = self._lines.desk.latest_for_caller(session.session_id)
        if earlier is not None and not earlier.final:
            return TransferReply(
                ok=True,
                detail=f"already asked {self._lines.owner}; the answer comes as a note",
                transfer_id=earlier.id,
            )
        if earlier is not None and earlier.status is not TransferStatus.FAILED:
            # Once per call: each ask may ring the owner's phone (and cost a call).
            return TransferReply(
                ok=False,
                detail=(
                    f"this caller asked already, and {self._lines.owner} could not take the "
                    "call; offer to take a message instead"
                ),
            )
        refused = self._limit(session)
        if refused is not None:
            return TransferReply(ok=False, detail=refused)
        record = self._lines.desk.create(
            kind=TransferKind.SCREENED,
            status=TransferStatus.ASKING,
            caller_session_id=session.session_id,
            caller_call_sid=session.call_sid,
            caller_number=session.caller_number,
            caller_name=self._who(session.caller_number),
            reason=request.reason,
            target_number=self._lines.settings.owner.phone,
            target_name=self._lines.owner,
        )
        log.info("transfer.requested", transfer_id=record.id, caller=session.name)
        owner = self._lines.presence.owner_main()
        if owner is not None and self._ask_in_call(record, owner):
            return TransferReply(
                ok=True,
                detail=(
                    f"{self._lines.owner} is on another call with TARS and is being asked "
                    "now. Tell the caller you are checking whether they can take the call, "
                    "and keep them company meanwhile; the answer comes as a note."
                ),
                transfer_id=record.id,
            )
        return self._ask_by_phone(record)

    def _limit(self, session: LiveSession) -> str | None:
        """Why this caller may not ask now (None: they may). Each ask may ring the owner's
        phone, at the owner's cost: a number asks once per :data:`ASK_AGAIN_AFTER`, and
        one screening call rings at a time."""
        desk, owner = self._lines.desk, self._lines.owner
        since = utcnow() - ASK_AGAIN_AFTER
        if desk.asked_from(session.caller_number, since) > 0:
            return (
                f"this number asked to be put through to {owner} a few minutes ago "
                f"already; offer to take a message instead"
            )
        if self._lines.presence.owner_main() is None and desk.phoning_owner():
            return (
                f"{owner} is being asked about another caller right now; offer to take a "
                "message instead"
            )
        return None

    def _ask_in_call(self, record: TransferRecord, owner: LiveSession) -> bool:
        moved = self._lines.desk.move(
            record.id,
            TransferStatus.ASKING,
            only_from={TransferStatus.ASKING},
            asked_by="live_call",
            owner_session=owner.session_id,
        )
        if moved is None:
            return True
        text = (
            f"{record.caller_name} is on the line and asks to speak with you, about: "
            f"{record.reason}. Ask {self._lines.owner} whether to put them through, then call "
            f"decide_transfer with transfer_id {record.id} and accept true or false."
        )
        if not self._lines.note(owner.session_id, text):
            return False
        self._arm(record.id, TransferStatus.ASKING, self._lines.settings.transfer.ring_seconds)
        return True

    def _ask_by_phone(self, record: TransferRecord) -> TransferReply:
        telephony = self._lines.telephony()
        owner_phone = self._lines.settings.owner.phone
        if telephony is None or not owner_phone:
            self._lines.desk.move(
                record.id,
                TransferStatus.FAILED,
                only_from=OPEN_STATUSES,
                detail="the owner could not be phoned",
            )
            return TransferReply(
                ok=False,
                detail=f"{self._lines.owner} cannot be reached right now; offer to take a message",
            )
        parameters = stream_tokens.placed_call(
            self._lines.store,
            account_sid=self._lines.settings.secrets.twilio_account_sid,
            from_number=self._lines.settings.twilio.phone_number,
            to_number=owner_phone,
            transfer_id=record.id,
        )
        public_url = self._lines.settings.server.public_url
        twiml = connect_twiml(
            stream_url(public_url),
            {"transfer_id": str(record.id), "direction": "outbound-api", **parameters},
        )
        ring = self._lines.settings.transfer.ring_seconds
        self._lines.desk.move(
            record.id,
            TransferStatus.RINGING,
            only_from={TransferStatus.ASKING},
            asked_by="screening_call",
            owner_session=None,
        )
        telephony.tell(
            PlaceCall(
                to=owner_phone,
                twiml=twiml,
                status_callback=f"{public_url}{STATUS_PATH}",
                time_limit_seconds=SCREENING_CALL_LIMIT,
                ring_seconds=ring,
                reply_to=self._lines.router,
                correlation_id=f"{SCREENING_PREFIX}{record.id}",
            )
        )
        self._arm(record.id, TransferStatus.RINGING, ring + DIAL_SECONDS)
        log.info("transfer.screening_call", transfer_id=record.id)
        return TransferReply(
            ok=True,
            detail=(
                f"TARS is phoning {self._lines.owner} to ask. Tell the caller you are checking "
                "whether they can take the call, and keep them company meanwhile; the "
                "answer comes as a note."
            ),
            transfer_id=record.id,
        )

    def decide(self, request: DecideTransfer) -> TransferReply:
        record = self._lines.desk.get(request.transfer_id)
        decider = self._lines.presence.get(request.session_id)
        if record is None or record.kind is not TransferKind.SCREENED:
            return TransferReply(ok=False, detail=f"there is no transfer {request.transfer_id}")
        # The owner's own call, or the screening call placed for this very transfer.
        screening = decider is not None and decider.info.screening == record.id
        if decider is None or not (decider.is_owner or screening):
            return TransferReply(ok=False, detail="only the owner's own call can decide")
        if not record.open:
            return TransferReply(ok=False, detail=f"that transfer is {record.status} already")
        fields = {
            "decided_at": utcnow(),
            "owner_session": decider.session_id,
            "owner_call_sid": decider.call_sid,
        }
        if not request.accept:
            declined = self._lines.desk.move(
                record.id, TransferStatus.DECLINED, only_from=OPEN_STATUSES, **fields
            )
            if declined is None:
                return TransferReply(ok=False, detail="that transfer was settled meanwhile")
            self._settled(declined, record.status, decider)
            self._lines.tell_caller(
                declined,
                f"{self._lines.owner} cannot take the call right now. Tell the caller kindly, and "
                "offer to take a message for them (take_message).",
            )
            log.info("transfer.declined", transfer_id=record.id)
            return TransferReply(
                ok=True,
                detail=(
                    f"Declined: {record.caller_name} is told and offered to leave a message."
                    + (" Say a short goodbye and end the call." if screening else "")
                ),
                transfer_id=record.id,
            )
        accepted = self._lines.desk.move(
            record.id, TransferStatus.ACCEPTED, only_from=OPEN_STATUSES, **fields
        )
        if accepted is None:
            return TransferReply(ok=False, detail="that transfer was settled meanwhile")
        self._settled(accepted, record.status, decider)
        caller = self._lines.caller(accepted)
        if caller is None:
            self._lines.desk.move(
                record.id,
                TransferStatus.CANCELED,
                only_from={TransferStatus.ACCEPTED},
                detail="the caller hung up before the bridge",
            )
            return TransferReply(ok=False, detail=f"{record.caller_name} has hung up already")
        log.info("transfer.accepted", transfer_id=record.id)
        self._bridge.redirect_caller(accepted, caller)
        return TransferReply(
            ok=True,
            detail=(
                f"Putting {record.caller_name} through now. Say so in a few words, and do not "
                "call end_call: the calls are joined right after."
            ),
            transfer_id=record.id,
        )

    def connect(self, request: ConnectCall) -> TransferReply:
        return self._bridge.connect(request)

    def redirected(self, message: CallRedirected | RedirectFailed) -> None:
        self._bridge.redirected(message)

    def placed(self, message: CallPlaced | CallFailed) -> None:
        """The screening call was placed (or not)."""
        transfer_id = int(message.correlation_id.removeprefix(SCREENING_PREFIX))
        if isinstance(message, CallFailed):
            failed = self._lines.desk.move(
                transfer_id,
                TransferStatus.FAILED,
                only_from={TransferStatus.RINGING},
                detail=f"screening call not placed: {message.error}",
            )
            if failed is not None:
                self._disarm(transfer_id)
                self._lines.tell_caller(
                    failed,
                    f"{self._lines.owner} could not be reached. Tell the caller, and offer to take "
                    "a message for them (take_message).",
                )
            return
        self._lines.desk.set_fields(transfer_id, screening_call_sid=message.call_sid)
        stream_tokens.bind_placed_call(self._lines.store, message.call_sid, transfer_id=transfer_id)
        record = self._lines.desk.get(transfer_id)
        if record is not None and record.final and record.owner_call_sid != message.call_sid:
            # Settled before Twilio's answer came (the caller hung up): stop it ringing.
            self._lines.hang_up(message.call_sid, "transfer settled")

    def call_ended(self, call_sid: str, status: str) -> None:
        """A final status for a call that had no session: a screening call never answered."""
        record = self._lines.desk.for_screening_call(call_sid)
        if record is None:
            return
        missed = self._lines.desk.move(
            record.id,
            TransferStatus.NO_ANSWER,
            only_from={TransferStatus.RINGING},
            detail=f"screening call {status}",
        )
        if missed is not None:
            self._disarm(record.id)
            log.info("transfer.no_answer", transfer_id=record.id, status=status)
            self._lines.tell_caller(missed, self._no_answer_note())

    def joined(self, session: LiveSession) -> None:
        """A session started: if it is a screening call, the owner answered."""
        transfer_id = session.info.screening
        if transfer_id is None:
            return
        answered = self._lines.desk.move(
            transfer_id,
            TransferStatus.SCREENING,
            only_from={TransferStatus.RINGING},
            owner_session=session.session_id,
            owner_call_sid=session.call_sid,
        )
        if answered is None:
            record = self._lines.desk.get(transfer_id)
            what = "was settled" if record is None else f"is {record.status}"
            session.ref.tell(
                Instruct(
                    text=(
                        f"[System note] This call was about a caller who asked to be put "
                        f"through, but that request {what} meanwhile (they may have hung "
                        f"up). Tell {self._lines.owner} in a sentence, say goodbye and end "
                        "the call."
                    )
                )
            )
            return
        self._arm(transfer_id, TransferStatus.SCREENING, DECIDE_SECONDS)

    def left(self, session_id: int) -> None:
        """A session ended: what it was part of that is still open."""
        for record in self._lines.desk.involving(session_id):
            if record.caller_session_id == session_id and record.open:
                self._caller_gone(record)
            elif (
                record.owner_session_id == session_id and record.status is TransferStatus.SCREENING
            ):
                missed = self._lines.desk.move(
                    record.id,
                    TransferStatus.NO_ANSWER,
                    only_from={TransferStatus.SCREENING},
                    detail="the owner hung up without deciding",
                )
                if missed is not None:
                    self._disarm(record.id)
                    self._lines.tell_caller(missed, self._no_answer_note())
            elif record.owner_session_id == session_id and record.status is TransferStatus.ASKING:
                # The owner's live call ended before they answered: phone them instead.
                self._disarm(record.id)
                reply = self._ask_by_phone(record)
                if not reply.ok:
                    self._lines.tell_caller(record, self._no_answer_note())

    def deadline(self, message: TransferDeadline) -> None:
        self._deadlines.pop(message.transfer_id, None)
        record = self._lines.desk.get(message.transfer_id)
        if record is None or record.status is not message.status:
            return
        missed = self._lines.desk.move(
            record.id,
            TransferStatus.NO_ANSWER,
            only_from={message.status},
            detail=f"no answer within the time ({message.status})",
        )
        if missed is None:
            return
        log.info("transfer.no_answer", transfer_id=record.id, status=str(message.status))
        if record.status is TransferStatus.RINGING and record.screening_call_sid:
            self._lines.hang_up(record.screening_call_sid, "screening call not answered")
        if record.status is TransferStatus.ASKING:
            self._lines.instruct(
                record.owner_session_id,
                f"[System note] The request to put {record.caller_name} through (transfer "
                f"{record.id}) has expired: they are offered to leave a message instead. "
                "If it comes up, say so briefly.",
            )
        if record.status is TransferStatus.SCREENING:
            self._lines.instruct(
                record.owner_session_id,
                f"[System note] Time is up: {record.caller_name} is told you could not take "
                "the call and is offered to leave a message. Say goodbye and end the call.",
            )
        self._lines.tell_caller(missed, self._no_answer_note())

    def recover(self) -> int:
        """At the Router's start: deadlines again for open transfers (cancelled if their
        caller is gone), and bridges asked for again where they stood: a redirect done
        answers at once, one whose outcome is unknown is not repeated. How many there were."""
        unsettled = self._lines.desk.unsettled()
        now = utcnow()
        for record in unsettled:
            if record.open and self._lines.caller(record) is None:
                self._caller_gone(record)
            elif record.open:
                budget = self._budget(record.status)
                left = (record.created_at + timedelta(seconds=budget) - now).total_seconds()
                self._arm(record.id, record.status, max(0.0, left))
            else:
                self._bridge.resume(record)
        return len(unsettled)

    # --- the bridge ---------------------------------------------------------------------------

    def _caller_gone(self, record: TransferRecord) -> None:
        canceled = self._lines.desk.move(
            record.id,
            TransferStatus.CANCELED,
            only_from=OPEN_STATUSES,
            detail="the caller hung up before it was decided",
        )
        if canceled is None:
            return
        self._disarm(record.id)
        log.info("transfer.canceled", transfer_id=record.id)
        if record.status is TransferStatus.RINGING and record.screening_call_sid:
            self._lines.hang_up(record.screening_call_sid, "caller hung up")
        elif record.owner_session_id is not None:
            self._lines.instruct(
                record.owner_session_id,
                f"[System note] {record.caller_name}, who asked to be put through, has hung "
                "up: nothing to decide any more. Tell the owner in a few words"
                + (
                    ", say goodbye and end the call."
                    if record.status is TransferStatus.SCREENING
                    else "."
                ),
            )

    def _settled(self, record: TransferRecord, was: TransferStatus, decider: LiveSession) -> None:
        """Decided: no deadline, and a screening call still ringing is not needed."""
        self._disarm(record.id)
        ringing = was is TransferStatus.RINGING and record.screening_call_sid
        if ringing and decider.call_sid != record.screening_call_sid:
            assert record.screening_call_sid is not None
            self._lines.hang_up(record.screening_call_sid, "decided in another call")

    def _no_answer_note(self) -> str:
        return (
            f"{self._lines.owner} did not answer. Tell the caller they could not take the call "
            "right now, and offer to take a message for them (take_message)."
        )

    def _who(self, number: str) -> str:
        """Who the owner is told is calling: a contact's name (the owner's own words), the
        number, or for a caller ID that is no number (free text a SIP caller chose) none."""
        with self._lines.store.connection():
            contact = Contact.get_or_none(Contact.phone == number)
        if contact is not None:
            return label(str(contact.name))
        return number if E164_PATTERN.fullmatch(number) else "a caller without a number"

    def _budget(self, status: TransferStatus) -> float:
        ring = float(self._lines.settings.transfer.ring_seconds)
        if status is TransferStatus.RINGING:
            return ring + DIAL_SECONDS
        if status is TransferStatus.SCREENING:
            return ring + DIAL_SECONDS + DECIDE_SECONDS
        return ring

    def _arm(self, transfer_id: int, status: TransferStatus, delay: float) -> None:
        self._disarm(transfer_id)
        router = self._lines.router
        message = TransferDeadline(transfer_id=transfer_id, status=status)

        def fire() -> None:
            ref = router()
            if ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(message)

        self._deadlines[transfer_id] = self._timers.call_later(delay, fire)

    def _disarm(self, transfer_id: int) -> None:
        handle = self._deadlines.pop(transfer_id, None)
        if handle is not None:
            handle.cancel()

    def close(self) -> None:
        """The Router stops: its deadlines go (the next Router arms them from the rows)."""
        for handle in self._deadlines.values():
            handle.cancel()
        self._deadlines.clear()
