"""Goal calls: TARS phones someone for the owner with an objective, and reports back.

A goal is a ``call_goals`` row: whom (a contact or a number), the objective, the session
that asked, and as the call goes on its Twilio call SID, its own session, the outcome the
goal session recorded and, once the call is over, the final status and the summary routed
to the owner. Finishing is claimed once (``FOR UPDATE``), so a status callback and the
session's end cannot both report the same call.

Several daemons may share the database: a goal names the daemon that placed its call, then
the one that runs its session, then the one that finishes and reports it. What a daemon that
is gone left unreported or still going is taken up (:meth:`GoalDesk.take_up`) by one live
daemon: each goal is claimed by moving its ``daemon_id`` from the gone one's.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from google import genai

from tars_actors.actor_messages import PlaceCall
from tars_actors.call.caller_words import quote
from tars_actors.messaging.ledger import MAX_BODY_CHARS, OWNER_TARGET
from tars_actors.messaging.routing import Dispatch, MessageType, Switchboard, clip
from tars_actors.runtime.settings import Settings
from tars_actors.store import (
    E164_PATTERN,
    CallGoal,
    Contact,
    Conversation,
    Daemon,
    DaemonStatus,
    GoalStatus,
    Store,
    utcnow,
)
from tars_actors.telephony import stream_tokens
from tars_actors.telephony.twiml import STATUS_PATH, connect_twiml, stream_url

__all__ = [
    "FINAL_GOAL_STATUSES",
    "GOAL_PREFIX",
    "INTERRUPTED",
    "GoalDesk",
    "GoalError",
    "GoalRecord",
    "create_goal",
    "fallback_report",
    "finish_goal",
    "goal_call_twiml",
    "goal_status_for",
    "record_outcome",
    "summarize",
    "transcript_of",
    "voicemail_note",
]

log = structlog.get_logger("tars.goals")

FINAL_GOAL_STATUSES: Final = frozenset(
    {
        GoalStatus.COMPLETED,
        GoalStatus.BUSY,
        GoalStatus.NO_ANSWER,
        GoalStatus.FAILED,
        GoalStatus.VOICEMAIL,
        GoalStatus.CANCELED,
    }
)

#: Twilio's final call statuses → a goal's.
_TWILIO_FINAL: Final = {
    "completed": GoalStatus.COMPLETED,
    "busy": GoalStatus.BUSY,
    "no-answer": GoalStatus.NO_ANSWER,
    "failed": GoalStatus.FAILED,
    "canceled": GoalStatus.CANCELED,
}

#: The error a goal call is reported failed with when its daemon is gone mid-call.
INTERRUPTED: Final = "TARS restarted while the call was going on"
#: How much of the transcript the fallback report quotes.
FALLBACK_LINES = 4


class GoalError(ValueError):
    """A goal call that cannot be placed, in words the model can relay."""


@dataclass(frozen=True, slots=True)
class GoalRecord:
    id: int
    contact_name: str
    phone: str
    objective: str
    status: GoalStatus
    call_sid: str | None
    parent_session_id: int | None
    session_id: int | None
    outcome: str | None
    summary: str | None
    created_at: datetime
    ended_at: datetime | None


def _record(row: Any) -> GoalRecord:
    return GoalRecord(
        id=int(row.id),
        contact_name=str(row.contact_name),
        phone=str(row.phone),
        objective=str(row.objective),
        status=GoalStatus(row.status),
        call_sid=row.call_sid,
        parent_session_id=None if row.parent_session_id is None else int(row.parent_session_id),
        session_id=None if row.session_id is None else int(row.session_id),
        outcome=row.outcome,
        summary=row.summary,
        created_at=row.created_at,
        ended_at=row.ended_at,
    )


def goal_status_for(twilio_status: str) -> GoalStatus | None:
    """The goal status a final Twilio call status means; None for a call still going."""
    return _TWILIO_FINAL.get(twilio_status)


def create_goal(
    store: Store, *, callee: str, objective: str, parent_session_id: int | None
) -> GoalRecord:
    """Record a goal for ``callee`` (a contact's name or a +E.164 number), status dialing.

    GoalError when the callee is neither a known contact nor a number, or the objective
    is empty.
    """
    goal_text = objective.strip()
    if not goal_text:
        raise GoalError("the call needs an objective: say what to achieve")
    wanted = callee.strip()
    contact = None
    if E164_PATTERN.fullmatch(wanted):
        contact = Contact.get_or_none(Contact.phone == wanted)
        name, phone = (str(contact.name) if contact is not None else wanted), wanted
    else:
        folded = wanted.casefold()
        contacts = list(Contact.select().order_by(Contact.name))
        matches = [c for c in contacts if str(c.name).casefold() == folded]
        if not matches:
            known = ", ".join(f'"{c.name}"' for c in contacts) or "none"
            raise GoalError(
                f'"{wanted}" is neither a contact nor a +E.164 number; contacts: {known}'
            )
        contact = matches[0]
        name, phone = str(contact.name), str(contact.phone)
    with store.transaction():
        row = CallGoal.create(
            contact=contact,
            contact_name=name,
            phone=phone,
            objective=goal_text,
            status=GoalStatus.DIALING,
            parent_session=parent_session_id,
            created_at=utcnow(),
            daemon_id=store.daemon_id,
        )
    log.info("goal.created", goal_id=int(row.id), callee=name)
    return _record(row)


def goal_call_twiml(settings: Settings, store: Store, goal: GoalRecord) -> tuple[str, str]:
    """The inline TwiML that connects the answered call to TARS, and the status callback URL.

    Records the call about to be placed: its stream proves it is this goal's call with the
    one-time token the TwiML carries (``<Stream url>`` cannot carry a query string; the
    goal id beside it is for Twilio's logs, the record is what counts).
    """
    public_url = settings.server.public_url
    parameters = stream_tokens.placed_call(
        store,
        account_sid=settings.secrets.twilio_account_sid,
        from_number=settings.twilio.phone_number,
        to_number=goal.phone,
        goal_id=goal.id,
    )
    twiml = connect_twiml(
        stream_url(public_url),
        {"goal_id": str(goal.id), "direction": "outbound-api", **parameters},
    )
    return twiml, f"{public_url}{STATUS_PATH}"


def goal_for_call(call_sid: str) -> GoalRecord | None:
    row = CallGoal.get_or_none(CallGoal.call_sid == call_sid)
    return None if row is None else _record(row)


def voicemail_note(answered_by: str, call_sid: str) -> str | None:
    """What a goal call's model is told when Twilio's answering-machine detection says a
    machine (or a fax) answered; None for a person, or a call that is no goal's."""
    if not answered_by.startswith("machine") and answered_by != "fax":
        return None
    goal = goal_for_call(call_sid)
    if goal is None:
        return None
    return (
        "[System note] This call reached voicemail. After the beep, leave one or two "
        f"sentences for {goal.contact_name}: who you are, on whose behalf you call, and "
        "what about. Then say goodbye and call end_call."
    )


def mark_dialing(store: Store, goal_id: int, call_sid: str) -> None:
    """Twilio accepted the goal's call: its SID, on the goal and on the call's record."""
    with store.transaction():
        CallGoal.update(call_sid=call_sid).where(CallGoal.id == goal_id).execute()
        stream_tokens.bind_placed_call(store, call_sid, goal_id=goal_id)


def mark_answered(store: Store, goal_id: int, *, call_sid: str, session_id: int) -> None:
    """The goal's call was answered and its session runs on this daemon."""
    with store.transaction():
        CallGoal.update(
            call_sid=call_sid,
            session=session_id,
            status=GoalStatus.IN_PROGRESS,
            daemon_id=store.daemon_id,
        ).where(CallGoal.id == goal_id, CallGoal.status.not_in(FINAL_GOAL_STATUSES)).execute()


def record_outcome(store: Store, session_id: int, *, outcome: str, achieved: bool) -> GoalRecord:
    """What the goal session says came of the call (``report_goal_outcome``)."""
    text = f"{'Objective met' if achieved else 'Objective not met'}: {outcome.strip()}"
    with store.transaction():
        row = store.for_update(CallGoal.select().where(CallGoal.session == session_id)).first()
        if row is None:
            raise GoalError("this call has no goal to report on")
        row.outcome = text
        row.save()
    return _record(row)


def finish_goal(store: Store, goal_id: int, status: GoalStatus) -> GoalRecord | None:
    """Give the goal its final status, once: None if it was finished already. The daemon
    that finishes it reports it."""
    with store.transaction():
        row = store.for_update(CallGoal.select().where(CallGoal.id == goal_id)).first()
        if row is None or row.status in FINAL_GOAL_STATUSES:
            return None
        row.status = status
        row.ended_at = utcnow()
        row.daemon_id = store.daemon_id
        row.save()
    return _record(row)


def save_summary(store: Store, goal_id: int, summary: str) -> bool:
    """Save the summary of the goal's report unless it has one already; whether it was."""
    with store.transaction():
        return bool(
            CallGoal.update(summary=summary)
            .where(CallGoal.id == goal_id, CallGoal.summary.is_null())
            .execute()
        )


def _claim_goals(store: Store, *where: Any) -> list[GoalRecord]:
    """Goals matching ``where`` whose daemon is gone (or was never named), claimed for this
    daemon: each row is locked (rows another daemon is claiming are skipped) and its
    ``daemon_id`` moves only from the value read, so of several daemons taking up at once
    one gets each goal.

    Gone means a member known to have stopped or been lost: a goal placed by ``python run.py
    call`` names that command's run, never a member, and is left to Twilio's callbacks (its
    stream or its final status reaches a member)."""
    ended = Daemon.select(Daemon.id).where(
        Daemon.status.in_([DaemonStatus.LOST, DaemonStatus.STOPPED])
    )
    gone = CallGoal.daemon_id.is_null() | CallGoal.daemon_id.in_(ended)
    claimed: list[GoalRecord] = []
    with store.transaction():
        query = CallGoal.select().where(gone, *where).order_by(CallGoal.id)
        for row in list(store.for_update(query, skip_locked=True)):
            held = row.daemon_id
            was = CallGoal.daemon_id.is_null() if held is None else CallGoal.daemon_id == held
            changed = (
                CallGoal.update(daemon_id=store.daemon_id)
                .where(CallGoal.id == row.id, was, *where)
                .execute()
            )
            if changed:
                claimed.append(_record(row))
    return claimed


def transcript_of(session_id: int | None) -> list[str]:
    """The goal session's transcript as "Speaker: text" lines, in order."""
    if session_id is None:
        return []
    rows = (
        Conversation.select().where(Conversation.session == session_id).order_by(Conversation.seq)
    )
    names = {"caller": "Callee", "assistant": "TARS", "system": "System"}
    return [f"{names.get(str(row.speaker), str(row.speaker))}: {row.text}" for row in rows]


_STATUS_WORDS: Final = {
    GoalStatus.COMPLETED: "the call took place",
    GoalStatus.BUSY: "the line was busy",
    GoalStatus.NO_ANSWER: "nobody answered",
    GoalStatus.FAILED: "the call could not be placed",
    GoalStatus.VOICEMAIL: "it went to voicemail and a message was left",
    GoalStatus.CANCELED: "the call was cancelled",
}


def summarize(client: genai.Client, model: str, goal: GoalRecord, transcript: Sequence[str]) -> str:
    """Two or three sentences from the text model: was the objective met, what was agreed,
    next steps. Raises whatever the client raises."""
    prompt = (
        "Summarise this phone call for the person who asked for it, in 2 or 3 short "
        "sentences: was the objective met, what was agreed, and the next steps. Plain text.\n"
        f"Called: {goal.contact_name}\nObjective: {goal.objective}\n"
        f"How it went: {_STATUS_WORDS.get(goal.status, str(goal.status))}\n"
        f"Outcome recorded during the call: {goal.outcome or 'none'}\n"
        "Transcript:\n" + ("\n".join(transcript) or "(nothing was said)")
    )
    response = client.models.generate_content(model=model, contents=prompt)
    text = (response.text or "").strip()
    if not text:
        raise ValueError("the text model returned no text")
    return text


def fallback_report(goal: GoalRecord, transcript: Sequence[str]) -> str:
    """The report without the text model: the outcome and the last lines said."""
    parts = [f"{_STATUS_WORDS.get(goal.status, str(goal.status)).capitalize()}."]
    if goal.outcome:
        parts.append(goal.outcome.rstrip(".") + ".")
    if transcript:
        parts.append("Last words: " + " / ".join(transcript[-FALLBACK_LINES:]))
    return " ".join(parts)


def report_body(goal: GoalRecord, summary: str) -> str:
    # The summary retells what the contact said: it is quoted as their words.
    return f'Goal call to {goal.contact_name} ("{goal.objective}"): {quote(summary)}'


class GoalDesk:
    """Carries a goal call through its life for the CallSupervisor and the tools.

    The slow end (the text model's summary) runs on ``pool``, off every actor's thread;
    the report is written to the ledger first and then handed to the Router, so a Router
    that is restarting finds it at its start.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        switchboard: Switchboard,
        client: Callable[[], genai.Client],
        pool: concurrent.futures.Executor,
    ) -> None:
        self._settings = settings
        self._store = store
        self._switchboard = switchboard
        self._client = client
        self._pool = pool

    def use(self, settings: Settings) -> None:
        """Settings reloaded (SIGHUP): the next goal call uses these."""
        self._settings = settings

    def place(self, goal: GoalRecord, telephony: Any, reply_to: Any) -> None:
        """Ask Telephony to dial; the outcome goes to ``reply_to`` as CallPlaced/CallFailed."""
        with self._store.connection():
            twiml, status_callback = goal_call_twiml(self._settings, self._store, goal)
        telephony.tell(
            PlaceCall(
                to=goal.phone,
                twiml=twiml,
                status_callback=status_callback,
                detect_machine=True,
                time_limit_seconds=self._settings.sessions.max_call_seconds,
                reply_to=reply_to,
                correlation_id=f"{GOAL_PREFIX}{goal.id}",
            )
        )
        log.info("goal.dialing", goal_id=goal.id, to=goal.phone)

    def ended(self, goal_id: int, status: GoalStatus, *, error: str | None = None) -> None:
        """The call is over (or never happened): finish the goal and report, once."""
        context = contextvars.copy_context()
        self._pool.submit(context.run, self._close_and_report, goal_id, status, error)

    def take_up(self) -> tuple[int, int]:
        """What daemons that are gone left behind (at boot: this daemon's predecessors): the
        goals that ended without their report going out (the daemon stopped while the
        summary was being written) are reported now, and the goals still dialing or in
        progress are over: reported failed. Each is claimed by one live daemon first.
        Returns how many of each (reported, failed)."""
        with self._store.connection():
            unreported = _claim_goals(
                self._store, CallGoal.status.in_(FINAL_GOAL_STATUSES), CallGoal.summary.is_null()
            )
            # A call Twilio has and that may still be ringing is left to its callbacks: its
            # stream or its final status reaches a live member, whoever placed it.
            ringing = (
                (CallGoal.status == GoalStatus.DIALING)
                & CallGoal.call_sid.is_null(False)
                & (CallGoal.created_at > utcnow() - RINGING_AT_MOST)
            )
            interrupted = _claim_goals(
                self._store,
                CallGoal.status.in_([GoalStatus.DIALING, GoalStatus.IN_PROGRESS]),
                ~ringing,
            )
        for goal in unreported:
            context = contextvars.copy_context()
            self._pool.submit(context.run, self._report_safely, goal, None)
        for goal in interrupted:
            self.ended(goal.id, GoalStatus.FAILED, error=INTERRUPTED)
        return len(unreported), len(interrupted)

    def _close_and_report(self, goal_id: int, status: GoalStatus, error: str | None) -> None:
        try:
            with self._store.connection():
                goal = finish_goal(self._store, goal_id, status)
        except Exception:
            log.exception("goal.finish_failed", goal_id=goal_id)
            return
        if goal is not None:
            log.info("goal.ended", goal_id=goal_id, status=str(status), error=error)
            self._report_safely(goal, error)

    def _report_safely(self, goal: GoalRecord, error: str | None) -> None:
        try:
            self._report(goal, error)
        except Exception:
            log.exception("goal.report_failed", goal_id=goal.id)

    def _report(self, goal: GoalRecord, error: str | None) -> None:
        """The summary (or the fallback), saved with the owner's message in one transaction:
        a goal has a summary exactly when its report is in the ledger."""
        with self._store.connection():
            transcript = transcript_of(goal.session_id)
            try:
                summary = summarize(
                    self._client(), self._settings.gemini.text_model, goal, transcript
                )
            except Exception as failure:  # noqa: BLE001 (the report goes out regardless)
                log.error(  # noqa: TRY400 (the error is the point, not a traceback)
                    "goal.summary_failed",
                    goal_id=goal.id,
                    error=f"{type(failure).__name__}: {failure}",
                )
                summary = fallback_report(goal, transcript)
            if error:
                summary = f"{summary} ({error})"
            body = report_body(goal, summary)
            with self._store.transaction():
                if not save_summary(self._store, goal.id, summary):
                    log.info("goal.reported_already", goal_id=goal.id)
                    return
                record = self._switchboard.ledger.record(
                    sender_session_id=goal.session_id,
                    sender_name=f"Goal call with {goal.contact_name}",
                    target=OWNER_TARGET,
                    message_type=MessageType.URGENT_REPORT,
                    body=clip(body, MAX_BODY_CHARS),
                )
        log.info("goal.reported", goal_id=goal.id, message_id=record.id)
        if not self._switchboard.tell(Dispatch(message_id=record.id)):
            log.warning("goal.router_not_running", goal_id=goal.id, message_id=record.id)


#: A goal call Twilio accepted this long ago has been answered or has ended by now (it
#: rings at most a minute): if its goal still says dialing, no callback will change that.
RINGING_AT_MOST: Final = timedelta(minutes=3)

#: ``correlation_id`` prefix of a goal call's PlaceCall.
GOAL_PREFIX: Final = "goal-"
