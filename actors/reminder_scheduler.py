"""The ReminderScheduler: delivers each reminder (and callback request) once, when it is due.

A permanent child of the root supervisor. It keeps one timer, for the soonest pending
reminder, and moves it whenever reminders are created or cancelled; each timer message
carries a generation, so a stale one (from before a change or a restart) does nothing.
At start it delivers whatever came due while the daemon was down, saying it is late.

Several daemons may share the database: each claims the occurrences it delivers, and on
:class:`~tars_actors.cluster.messages.TakeUp` (a member is gone) it claims and delivers what
that member left unsettled and looks again at the soonest due time (a reminder created on
another daemon fires here too). A draining daemon claims nothing new.

Delivery: into the owner's live call through the Router when there is one; otherwise as
``[reminders] delivery`` says: an outbound reminder call, an SMS, or both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pykka
import structlog

from tars_actors.actor_messages import (
    CallFailed,
    CallNotAnswered,
    CallPlaced,
    PlaceCall,
    SendSms,
    SettingsChanged,
    SmsFailed,
    SmsSent,
)
from tars_actors.call.caller_words import readable
from tars_actors.cluster.messages import TakeUp
from tars_actors.messaging.ledger import MAX_BODY_CHARS, OWNER_TARGET
from tars_actors.messaging.routing import Dispatch, MessageType, Switchboard, clip
from tars_actors.reminders.book import ReminderBook, ReminderRecord, RemindersChanged
from tars_actors.reminders.timing import describe_due
from tars_actors.runtime.actor import TarsActor
from tars_actors.runtime.settings import Settings
from tars_actors.runtime.timers import TimerHandle, Timers
from tars_actors.store import ReminderKind, Store
from tars_actors.telephony import stream_tokens
from tars_actors.telephony.twiml import STATUS_PATH, connect_twiml, stream_url

__all__ = ["ReminderScheduler", "RemindersChanged", "reminder_text"]

log = structlog.get_logger("tars.reminders")

#: A reminder delivered this much after its due time says that it is late.
LATE_AFTER = timedelta(seconds=60)
#: Twilio ends a reminder call after this long, whatever happens.
REMINDER_CALL_LIMIT_SECONDS = 300
_PREFIX = "reminder-"
#: The SMS sent when a reminder call was not answered.
_MISSED_PREFIX = "missed-reminder-"
#: Reminder calls remembered until Twilio says they went unanswered.
_CALLS_KEPT = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class _Due:
    generation: int


@dataclass(slots=True)
class _Delivery:
    """An occurrence being delivered by call and/or SMS: what is still awaited."""

    waiting: set[str]
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def reminder_text(reminder: ReminderRecord, *, now: datetime, tz: ZoneInfo) -> str:
    """What the owner hears or reads; a late one says when it was due."""
    text = reminder.title
    if reminder.kind == ReminderKind.REMINDER:
        text = f"Reminder: {text}"
    elif reminder.kind == ReminderKind.CALLBACK:
        # The number from the caller's session record; any other is inside their words.
        if reminder.caller_phone:
            text = f"{text} (call back on {reminder.caller_phone})"
        else:
            text = f"{text} (the caller's number is withheld)"
    if now - reminder.due_at >= LATE_AFTER:
        text += (
            f" (This reminder is late: it was due {describe_due(reminder.due_at, now=now, tz=tz)}.)"
        )
    return text


class ReminderScheduler(TarsActor):
    actor_kind = "ReminderScheduler"

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        timers: Timers,
        switchboard: Switchboard,
        telephony: Callable[[], pykka.ActorRef[Any] | None],
        me: Callable[[], pykka.ActorRef[Any] | None],
        boot: str,
        draining: Callable[[], bool] | None = None,
    ) -> None:
        """``me`` finds the live scheduler (replies reach a restarted one); ``boot``
        names this run of the daemon (occurrences sent in it are not sent again);
        ``draining``: while it says so, due reminders are left to the other daemons (the
        ones this daemon claimed are still settled)."""
        super().__init__()
        self._settings = settings
        self._store = store
        self._timers = timers
        self._switchboard = switchboard
        self._telephony = telephony
        self._me = me
        self._boot = boot
        self._draining = draining or (lambda: False)
        self._tz = ZoneInfo(settings.owner.timezone)
        self._book = ReminderBook(store, self._tz, clock=timers.wall_now)
        self._generation = 0
        self._timer: TimerHandle | None = None
        self._deliveries: dict[int, _Delivery] = {}
        # Reminder calls placed by this scheduler, by call SID, and what each says.
        self._calls: dict[str, int] = {}
        self._texts: dict[int, str] = {}

    def on_start(self) -> None:
        self._store.connect()
        self._take_up()
        self._schedule()

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._store.close()

    def on_receive(self, message: Any) -> Any:
        match message:
            case RemindersChanged():
                self._schedule()
            case TakeUp(reason=reason):
                log.info("reminders.taking_up", reason=reason)
                self._take_up()
                self._schedule()
            case SettingsChanged(settings=settings):
                self._settings = settings
            case _Due(generation=generation):
                if generation != self._generation:
                    return None  # stale: a change or a restart moved the timer since
                self._timer = None
                self._deliver_due()
                self._schedule()
            case SmsSent(correlation_id=cid) if cid.startswith(_MISSED_PREFIX):
                reminder_id = int(cid.removeprefix(_MISSED_PREFIX))
                self._book.relabel(reminder_id, "texted_after_unanswered_call")
                log.info(
                    "reminders.delivered",
                    reminder_id=reminder_id,
                    how="texted_after_unanswered_call",
                )
            case SmsFailed(correlation_id=cid, error=error) if cid.startswith(_MISSED_PREFIX):
                log.error("reminders.fallback_failed", correlation_id=cid, error=error)
            case SmsSent(correlation_id=cid):
                self._part_done(cid, "texted")
            case SmsFailed(correlation_id=cid, error=error):
                self._part_failed(cid, "texted", f"SMS: {error}")
            case CallPlaced(correlation_id=cid, call_sid=sid):
                log.info("reminders.call_placed", correlation_id=cid, call_sid=sid)
                placed = _reminder_id(cid)
                if placed is not None:
                    stream_tokens.bind_placed_call(self._store, sid, reminder_id=placed)
                    self._calls[sid] = placed
                    while len(self._calls) > _CALLS_KEPT:
                        self._calls.pop(next(iter(self._calls)))
                self._part_done(cid, "called")
            case CallNotAnswered(call_sid=sid, status=status):
                self._not_answered(sid, status)
            case CallFailed(correlation_id=cid, error=error):
                self._part_failed(cid, "called", f"call: {error}")
            case _:
                return super().on_receive(message)
        return None

    # --- timing ---------------------------------------------------------------------------

    def _take_up(self) -> None:
        """Deliver what was claimed and left unsettled by a daemon that is gone (or by this
        one's previous scheduler), then what is due."""
        unsettled = self._book.claim_unsettled(boot=self._boot, others=not self._draining())
        if unsettled:
            # Claimed by a daemon that stopped before it could say how they went.
            log.warning("reminders.redelivering", count=len(unsettled))
        for reminder in unsettled:
            self._deliver(reminder)
        self._deliver_due()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._generation += 1
        if self._draining():
            return  # due reminders are the other daemons' now: no timer to wake for them
        due = self._book.next_due()
        if due is None:
            return
        delay = max(0.0, (due - self._timers.wall_now()).total_seconds())
        generation = self._generation
        ref = self.actor_ref

        def fire() -> None:
            # Stopped meanwhile: its successor schedules its own timer.
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(_Due(generation=generation))

        self._timer = self._timers.call_later(delay, fire)
        log.debug("reminders.scheduled", due_at=due.isoformat(), delay_seconds=round(delay, 3))

    def _deliver_due(self) -> None:
        if self._draining():
            return
        for reminder in self._book.claim_due():
            self._deliver(reminder)

    # --- delivery -------------------------------------------------------------------------

    def _deliver(self, reminder: ReminderRecord) -> None:
        now = self._timers.wall_now()
        text = reminder_text(reminder, now=now, tz=self._tz)
        late = now - reminder.due_at >= LATE_AFTER
        log.info(
            "reminders.due",
            reminder_id=reminder.id,
            kind=str(reminder.kind),
            late=late,
            due_at=reminder.due_at.isoformat(),
        )
        if self._switchboard.presence.owner_main() is not None:
            # Written to the ledger here, then handed to the Router: if the owner's call
            # ends first, the Router texts it; if the Router is restarting, it finds it.
            # One transaction: the occurrence is settled exactly when the owner's message
            # exists, so a crash in between cannot announce it twice.
            with self._store.transaction():
                record = self._switchboard.ledger.record(
                    sender_session_id=None,
                    sender_name="Reminders",
                    target=OWNER_TARGET,
                    message_type=MessageType.REMINDER,
                    body=clip(text, MAX_BODY_CHARS),
                )
                self._book.settle(reminder.id, "announced_in_call")
            log.info(
                "reminders.delivered",
                reminder_id=reminder.id,
                how="announced_in_call",
                message_id=record.id,
            )
            if not self._switchboard.tell(Dispatch(message_id=record.id)):
                log.warning("reminders.router_unavailable", message_id=record.id)
            return
        mode = self._settings.reminders.delivery
        parts = {"call", "message"} if mode == "both" else {mode}
        self._deliveries[reminder.id] = _Delivery(
            waiting={"called" if p == "call" else "texted" for p in parts}
        )
        telephony = self._telephony()
        if telephony is None:
            self._deliveries.pop(reminder.id)
            self._book.settle(reminder.id, "failed", error="the telephony actor is not running")
            log.error("reminders.failed", reminder_id=reminder.id, error="telephony not running")
            return
        cid = f"{_PREFIX}{reminder.id}"
        owner_phone = self._settings.owner.phone
        if "call" in parts:
            self._texts[reminder.id] = text
            while len(self._texts) > _CALLS_KEPT:  # answered calls never report back
                self._texts.pop(next(iter(self._texts)))
        self._book.mark_sending(reminder.id, boot=self._boot)
        if "message" in parts:
            telephony.tell(
                SendSms(
                    to=owner_phone,
                    body=readable(f"TARS: {text}"),
                    reply_to=self._me,
                    correlation_id=cid,
                )
            )
        if "call" in parts:
            server = self._settings.server
            # The reminder id beside the token is for Twilio's logs: the record counts.
            token = stream_tokens.placed_call(
                self._store,
                account_sid=self._settings.secrets.twilio_account_sid,
                from_number=self._settings.twilio.phone_number,
                to_number=owner_phone,
                reminder_id=reminder.id,
            )
            telephony.tell(
                PlaceCall(
                    to=owner_phone,
                    twiml=connect_twiml(
                        stream_url(server.public_url),
                        {"reminder_id": str(reminder.id), "direction": "outbound-api", **token},
                    ),
                    status_callback=f"{server.public_url}{STATUS_PATH}",
                    time_limit_seconds=REMINDER_CALL_LIMIT_SECONDS,
                    reply_to=self._me,
                    correlation_id=cid,
                )
            )

    def _not_answered(self, call_sid: str, status: str) -> None:
        """A reminder call nobody answered: the reminder goes by SMS after all."""
        reminder_id = self._calls.pop(call_sid, None)
        if reminder_id is None:
            return
        text = self._texts.pop(reminder_id, "")
        telephony = self._telephony()
        log.warning("reminders.call_not_answered", reminder_id=reminder_id, status=status)
        if telephony is None or not text:
            return
        telephony.tell(
            SendSms(
                to=self._settings.owner.phone,
                body=readable(f"TARS: {text} (I called, but nobody answered.)"),
                reply_to=self._me,
                correlation_id=f"{_MISSED_PREFIX}{reminder_id}",
            )
        )

    def _part_done(self, correlation_id: str, part: str) -> None:
        self._part(correlation_id, part, None)

    def _part_failed(self, correlation_id: str, part: str, error: str) -> None:
        self._part(correlation_id, part, error)

    def _part(self, correlation_id: str, part: str, error: str | None) -> None:
        reminder_id = _reminder_id(correlation_id)
        if reminder_id is None:
            return
        delivery = self._deliveries.get(reminder_id)
        if delivery is None:
            # Sent by this scheduler's predecessor: this reply is all there is to go on.
            delivery = _Delivery(waiting={part})
        if part not in delivery.waiting:
            return
        delivery.waiting.discard(part)
        if error is None:
            delivery.done.append(part)
        else:
            delivery.errors.append(error)
        if delivery.waiting:
            return
        self._deliveries.pop(reminder_id, None)
        if delivery.done:
            how = "called_and_texted" if len(delivery.done) == 2 else delivery.done[0]
            self._book.settle(reminder_id, how)
            log.info(
                "reminders.delivered", reminder_id=reminder_id, how=how, errors=delivery.errors
            )
        else:
            message = "; ".join(delivery.errors)
            self._book.settle(reminder_id, "failed", error=message)
            log.error("reminders.failed", reminder_id=reminder_id, error=message)


def _reminder_id(correlation_id: str) -> int | None:
    """The reminder a Telephony reply is about, from its ``reminder-N`` correlation id."""
    digits = correlation_id.removeprefix(_PREFIX)
    return int(digits) if correlation_id.startswith(_PREFIX) and digits.isdigit() else None
