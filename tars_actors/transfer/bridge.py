"""Joining the calls once the owner said yes, and ``connect_call``.

The bridge is a ``<Conference>``: both legs exist already when the owner says yes (the
caller's call, and the owner's: their live call with TARS or the screening call), and
redirecting both into one room is the one mechanism that joins two existing calls; a
``<Dial>`` would ring the owner's phone again, which is busy with the very call that said
yes. The caller's leg goes first and hears hold music until the owner's leg, after a
one-line whisper of who it is, starts the room; if the caller has hung up by then, the
owner's call is left as it was. Either side hanging up ends the room.

``connect_call`` redirects the owner's call to ``<Dial>`` the number, with the Twilio number
as caller ID.

Each leg's session is told :class:`~tars_actors.actor_messages.HandOver` before its
redirect is asked for, so that it ends with ``transferred`` (or ``connected``) when its
stream stops, and never hangs up the call it handed over.
"""

from __future__ import annotations

import structlog

from tars_actors.actor_messages import (
    CallRedirected,
    HandOver,
    Redirect,
    RedirectFailed,
    SayAndHangUp,
)
from tars_actors.call.caller_words import label
from tars_actors.messaging.routing import LiveSession
from tars_actors.store import TransferKind, TransferStatus
from tars_actors.transfer import desk as twimls
from tars_actors.transfer.desk import TransferRecord
from tars_actors.transfer.lines import Lines
from tars_actors.transfer.messages import (
    BRIDGED_CALL_LIMIT,
    CALLER_LEG,
    CONNECT_PREFIX,
    OWNER_LEG,
    SCREENING_PREFIX,
    ConnectCall,
    TransferReply,
)

__all__ = ["Bridge"]

log = structlog.get_logger("tars.transfer")

_BRIDGING = frozenset({TransferStatus.ACCEPTED})


class Bridge:
    """Runs on the Router's thread, like the switch."""

    def __init__(self, lines: Lines) -> None:
        self._lines = lines

    def connect(self, request: ConnectCall) -> TransferReply:
        lines = self._lines
        session = lines.session(request.session_id)
        if session is None or not session.is_owner:
            return TransferReply(ok=False, detail="only the owner's own call can be connected")
        if lines.telephony() is None:
            return TransferReply(ok=False, detail="connecting calls is not available right now")
        name = request.name or request.number
        record = lines.desk.create(
            kind=TransferKind.CONNECT,
            status=TransferStatus.ACCEPTED,
            caller_session_id=session.session_id,
            caller_call_sid=session.call_sid,
            caller_number=session.caller_number,
            caller_name=lines.owner,
            reason="",
            target_number=request.number,
            target_name=name,
        )
        lines.tell_session(session, HandOver(reason="connected"))
        self._connect_redirect(record)
        log.info("transfer.connecting", transfer_id=record.id, to=request.number)
        return TransferReply(
            ok=True,
            detail=(
                f"Connecting {lines.owner} to {name} now. Say so in a few words, and do not "
                "call end_call: the call is put through right after."
            ),
            transfer_id=record.id,
        )

    def resume(self, record: TransferRecord) -> None:
        """A bridge the Router before this one left half done: asked for again, leg by
        leg (Telephony answers a redirect done from its record, and never repeats one
        whose outcome it does not know)."""
        if record.kind is TransferKind.CONNECT:
            self._connect_redirect(record)
        else:
            self.redirect_caller(record, self._lines.caller(record))

    def _connect_redirect(self, record: TransferRecord) -> None:
        settings = self._lines.settings
        name = record.target_name or record.target_number
        asked = self._lines.tell_telephony(
            Redirect(
                call_sid=record.caller_call_sid,
                twiml=twimls.connect_twiml(
                    number=record.target_number,
                    caller_id=settings.twilio.phone_number,
                    ring_seconds=settings.transfer.ring_seconds,
                    announce=f"Connecting you to {label(name)}.",
                    language=settings.assistant.language,
                ),
                reason="connect",
                time_limit_seconds=BRIDGED_CALL_LIMIT,
                reply_to=self._lines.router,
                correlation_id=f"{CONNECT_PREFIX}{record.id}",
            )
        )
        if not asked:
            self._connected(record.id, _not_asked(record.caller_call_sid))

    def redirected(self, message: CallRedirected | RedirectFailed) -> None:
        cid = message.correlation_id
        if cid.startswith(CONNECT_PREFIX):
            self._connected(int(cid.removeprefix(CONNECT_PREFIX)), message)
            return
        leg = CALLER_LEG if cid.endswith(CALLER_LEG) else OWNER_LEG
        digits = cid.removeprefix(SCREENING_PREFIX).removesuffix(leg)
        if not digits.isdigit():
            return
        record = self._lines.desk.get(int(digits))
        if record is None or record.status is not TransferStatus.ACCEPTED:
            return
        if isinstance(message, RedirectFailed):
            self._failed(record, leg, message)
        elif leg == CALLER_LEG:
            self.redirect_owner(record)
        else:
            self._lines.desk.move(record.id, TransferStatus.BRIDGED, only_from=_BRIDGING)
            log.info("transfer.bridged", transfer_id=record.id, room=record.room)

    def redirect_caller(self, record: TransferRecord, caller: LiveSession | None) -> None:
        assert record.room is not None
        self._lines.tell_session(caller, HandOver(reason="transferred"))
        if not self._redirect(
            record.caller_call_sid,
            twimls.caller_leg_twiml(record.room),
            f"{SCREENING_PREFIX}{record.id}{CALLER_LEG}",
        ):
            self._failed(record, CALLER_LEG, _not_asked(record.caller_call_sid))

    def redirect_owner(self, record: TransferRecord) -> None:
        """The owner's leg, once the caller's is in the room (whether or not its session
        is still live: a restarted Router resumes a bridge after both handed over)."""
        assert record.room is not None
        if record.owner_call_sid is None:
            self._stranded(record, "no owner's call to join")
            return
        self._lines.tell_session(
            self._lines.session(record.owner_session_id), HandOver(reason="transferred")
        )
        whisper = twimls.whisper_text(record)
        language = self._lines.settings.assistant.language
        if not self._redirect(
            record.owner_call_sid,
            twimls.owner_leg_twiml(record.room, whisper, language),
            f"{SCREENING_PREFIX}{record.id}{OWNER_LEG}",
        ):
            self._failed(record, OWNER_LEG, _not_asked(record.owner_call_sid))

    def _redirect(self, call_sid: str, twiml: str, correlation_id: str) -> bool:
        return self._lines.tell_telephony(
            Redirect(
                call_sid=call_sid,
                twiml=twiml,
                reason="transfer",
                time_limit_seconds=BRIDGED_CALL_LIMIT,
                reply_to=self._lines.router,
                correlation_id=correlation_id,
            )
        )

    def _failed(self, record: TransferRecord, leg: str, failure: RedirectFailed) -> None:
        lines = self._lines
        if leg == OWNER_LEG:
            self._stranded(record, f"the owner's leg was not redirected: {failure.error}")
            return
        # The caller's leg stayed where it was: nobody moved, the owner's call goes on.
        gone = failure.ended
        lines.desk.move(
            record.id,
            TransferStatus.CANCELED if gone else TransferStatus.FAILED,
            only_from=_BRIDGING,
            detail=f"the caller's leg was not redirected: {failure.error}",
        )
        log.warning("transfer.caller_not_redirected", transfer_id=record.id, ended=gone)
        lines.tell_session(
            lines.caller(record),
            HandOver(
                reason=None,
                note=(
                    f"[System note] Putting the caller through to {lines.owner} failed. "
                    "Apologise, and offer to take a message (take_message)."
                ),
            ),
        )
        why = "has hung up" if gone else "could not be put through"
        lines.instruct(
            record.owner_session_id,
            f"[System note] {record.caller_name} {why}; the calls were not joined. Tell "
            f"{lines.owner} briefly.",
        )

    def _stranded(self, record: TransferRecord, why: str) -> None:
        """The caller waits in the room and the owner will not come: they hear why, and the
        call ends."""
        lines = self._lines
        failed = lines.desk.move(record.id, TransferStatus.FAILED, only_from=_BRIDGING, detail=why)
        if failed is None:
            return
        log.warning("transfer.failed", transfer_id=record.id, why=why)
        lines.notify_owner(
            f"{record.caller_name} asked to be put through to you, about {record.reason}; "
            "the calls could not be joined, and they were told you will see that they called."
        )
        lines.tell_telephony(
            SayAndHangUp(
                call_sid=record.caller_call_sid,
                text=(
                    f"Sorry, {lines.owner} could not be reached after all. They will see "
                    "that you called. Goodbye."
                ),
                language=lines.settings.assistant.language,
            )
        )

    def _connected(self, transfer_id: int, message: CallRedirected | RedirectFailed) -> None:
        lines = self._lines
        record = lines.desk.get(transfer_id)
        if record is None or record.status is not TransferStatus.ACCEPTED:
            return
        if isinstance(message, CallRedirected):
            lines.desk.move(transfer_id, TransferStatus.BRIDGED, only_from=_BRIDGING)
            log.info("transfer.connected", transfer_id=transfer_id, to=record.target_number)
            return
        lines.desk.move(
            transfer_id,
            TransferStatus.CANCELED if message.ended else TransferStatus.FAILED,
            only_from=_BRIDGING,
            detail=message.error,
        )
        log.warning("transfer.connect_failed", transfer_id=transfer_id, error=message.error)
        lines.tell_session(
            lines.caller(record),
            HandOver(
                reason=None,
                note=(
                    f"[System note] Connecting to {record.target_name} failed. Tell "
                    f"{lines.owner} and ask whether to try again later."
                ),
            ),
        )


def _not_asked(call_sid: str) -> RedirectFailed:
    return RedirectFailed(
        correlation_id="", call_sid=call_sid, error="the telephony actor is not running"
    )
