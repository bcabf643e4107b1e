"""The peewee models of the contract's seven tables and the vocabularies of their status columns.

Models are unbound until :meth:`tars_actors.store.Store.open` binds them to a database; a
schema change here needs a migration in :mod:`tars_actors.store.migrations` as well.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import peewee

# The one Permission vocabulary: a tiny pure module, so the store imports no call logic.
from tars_actors.call.permissions import Permission
from tars_actors.store.fields import ChoiceField, PhoneField, UTCDateTimeField, utcnow

__all__ = [
    "LIVE_DAEMON_STATUSES",
    "MODELS",
    "AgentSession",
    "ApprovalStatus",
    "BroadcastApproval",
    "CallGoal",
    "Contact",
    "Conversation",
    "Daemon",
    "DaemonStatus",
    "Direction",
    "GoalStatus",
    "InterSessionMessage",
    "MessageStatus",
    "Permission",
    "PinLockout",
    "Reminder",
    "ReminderKind",
    "ReminderStatus",
    "RestIntent",
    "SessionStatus",
    "Speaker",
    "StreamToken",
    "TarsModel",
    "Transfer",
    "TransferKind",
    "TransferStatus",
]


class SessionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    ENDED = "ended"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Speaker(StrEnum):
    CALLER = "caller"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class MessageStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    SMS_SENT = "sms_sent"
    QUEUED = "queued"
    AWAITING_APPROVAL = "awaiting_approval"
    DENIED = "denied"
    FAILED = "failed"
    READ = "read"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class ReminderStatus(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"


class ReminderKind(StrEnum):
    REMINDER = "reminder"
    #: A caller asked the owner to call back (``request_callback``).
    CALLBACK = "callback"


class GoalStatus(StrEnum):
    """A goal call's state; the terminal ones follow Twilio's call statuses (``canceled``)."""

    PENDING = "pending"
    DIALING = "dialing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    VOICEMAIL = "voicemail"
    CANCELED = "canceled"


class DaemonStatus(StrEnum):
    #: Renewing its heartbeat and taking calls.
    SERVING = "serving"
    #: Stopping: renewing its heartbeat, finishing its calls, taking no new ones.
    DRAINING = "draining"
    #: Stopped on its own, everything it held handed back.
    STOPPED = "stopped"
    #: Stopped renewing its heartbeat: another member closed its calls and took its work.
    LOST = "lost"


#: Members whose records (calls, claims, messages in hand) are still theirs.
LIVE_DAEMON_STATUSES = (DaemonStatus.SERVING, DaemonStatus.DRAINING)


class TransferKind(StrEnum):
    #: A caller asked to speak to the owner (``request_transfer``), who decides.
    SCREENED = "screened"
    #: The owner asked to be connected to someone (``connect_call``).
    CONNECT = "connect"


class TransferStatus(StrEnum):
    """A transfer's state; the last five are final."""

    #: Waiting for the owner's decision, asked in the owner's live call.
    ASKING = "asking"
    #: A screening call to the owner's phone is ringing.
    RINGING = "ringing"
    #: The owner answered the screening call and is deciding.
    SCREENING = "screening"
    #: Accepted: the legs are being redirected (for ``connect``: the owner's call is).
    ACCEPTED = "accepted"
    #: Both legs are in the room (for ``connect``: the owner's call is dialling the number).
    BRIDGED = "bridged"
    DECLINED = "declined"
    NO_ANSWER = "no_answer"
    #: The caller hung up (or the owner's call ended) before it was decided or bridged.
    CANCELED = "canceled"
    #: Twilio could not place the screening call or redirect a leg.
    FAILED = "failed"


class TarsModel(peewee.Model):
    """Base of every table: an integer id, and E.164 columns checked on save."""

    # Declared (peewee would add it anyway) so that `row.id` is typed.
    id = peewee.AutoField()

    class Meta:
        # Index names from the table name, as playhouse.migrate names the ones it adds.
        legacy_table_names = False

    def save(self, *args: Any, **kwargs: Any) -> int:
        for field in self._meta.sorted_fields:
            if isinstance(field, PhoneField):
                field.check(getattr(self, field.name))
        return super().save(*args, **kwargs)


class AgentSession(TarsModel):
    """One call (inbound or placed by TARS), from Twilio's ``start`` to its end."""

    name = peewee.CharField(max_length=100, index=True)
    call_sid = peewee.CharField(max_length=64, null=True, index=True)
    stream_sid = peewee.CharField(max_length=64, null=True)
    # Not E.164-checked: Twilio reports withheld numbers as "Anonymous" and the like.
    phone_number = peewee.CharField(max_length=32)
    permission = ChoiceField(Permission)
    status = ChoiceField(SessionStatus, default=SessionStatus.PENDING, index=True)
    purpose = peewee.TextField(null=True)
    parent_session = peewee.ForeignKeyField(
        "self", null=True, backref="child_sessions", on_delete="SET NULL"
    )
    direction = ChoiceField(Direction)
    started_at = UTCDateTimeField(default=utcnow)
    ended_at = UTCDateTimeField(null=True)
    end_reason = peewee.CharField(max_length=64, null=True)
    duration_seconds = peewee.FloatField(null=True)
    #: The daemon that runs the call (``daemons.id``); None in rows older than clusters.
    daemon_id = peewee.CharField(max_length=32, null=True, index=True)

    # Backrefs: peewee sets them when the referring models are defined; annotated for mypy.
    child_sessions: peewee.ModelSelect[AgentSession]
    transcript: peewee.ModelSelect[Conversation]
    broadcast_requests: peewee.ModelSelect[BroadcastApproval]
    sent_messages: peewee.ModelSelect[InterSessionMessage]
    received_messages: peewee.ModelSelect[InterSessionMessage]
    reminders: peewee.ModelSelect[Reminder]
    goals_requested: peewee.ModelSelect[CallGoal]

    class Meta:
        table_name = "agent_sessions"


class Conversation(TarsModel):
    """One transcript line of a session; ``seq`` orders the lines within the session."""

    # No index of its own: the unique (session, seq) index serves lookups by session.
    session = peewee.ForeignKeyField(
        AgentSession, backref="transcript", on_delete="CASCADE", index=False
    )
    speaker = ChoiceField(Speaker)
    text = peewee.TextField()
    spoken_at = UTCDateTimeField(default=utcnow)
    #: False for assistant speech the caller cut off (Gemini ``interrupted``) and never heard.
    heard = peewee.BooleanField(default=True)
    seq = peewee.IntegerField()

    class Meta:
        table_name = "conversations"
        indexes = ((("session", "seq"), True),)


class BroadcastApproval(TarsModel):
    """A broadcast from someone other than the owner, waiting for the owner's decision."""

    requester_session = peewee.ForeignKeyField(
        AgentSession, null=True, backref="broadcast_requests", on_delete="SET NULL"
    )
    requester_name = peewee.CharField(max_length=100)
    body = peewee.TextField()
    status = ChoiceField(ApprovalStatus, default=ApprovalStatus.PENDING, index=True)
    created_at = UTCDateTimeField(default=utcnow)
    decided_at = UTCDateTimeField(null=True)

    messages: peewee.ModelSelect[InterSessionMessage]  # backref

    class Meta:
        table_name = "broadcast_approvals"


class InterSessionMessage(TarsModel):
    """A routed message, written before delivery; ``status`` records its outcome.

    ``target`` keeps the target as the sender gave it ("user", a session id or name,
    "broadcast"); ``target_session`` is the session it resolved to, if any.
    """

    sender_session = peewee.ForeignKeyField(
        AgentSession, null=True, backref="sent_messages", on_delete="SET NULL"
    )
    sender_name = peewee.CharField(max_length=100)
    target = peewee.CharField(max_length=100)
    target_session = peewee.ForeignKeyField(
        AgentSession, null=True, backref="received_messages", on_delete="SET NULL"
    )
    message_type = peewee.CharField(max_length=32)
    body = peewee.TextField()
    status = ChoiceField(MessageStatus, default=MessageStatus.PENDING, index=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)
    delivered_at = UTCDateTimeField(null=True)
    read_at = UTCDateTimeField(null=True)
    error = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    #: The daemon that holds it for a delivery now (handed to one of its calls, or being
    #: texted); None when no one does. Another may take it up once that one is gone.
    held_by = peewee.CharField(max_length=32, null=True, index=True)
    approval = peewee.ForeignKeyField(
        BroadcastApproval, null=True, backref="messages", on_delete="SET NULL"
    )

    class Meta:
        table_name = "inter_session_messages"

    def save(self, *args: Any, **kwargs: Any) -> int:
        self.updated_at = utcnow()
        return super().save(*args, **kwargs)


class Contact(TarsModel):
    """Someone the owner knows: callers from this number get the ``contact`` level."""

    name = peewee.CharField(max_length=100, index=True)
    phone = PhoneField(unique=True)
    relation = peewee.CharField(max_length=100, null=True)
    created_at = UTCDateTimeField(default=utcnow)

    call_goals: peewee.ModelSelect[CallGoal]  # backref

    class Meta:
        table_name = "contacts"


class Reminder(TarsModel):
    """A reminder or callback request, delivered once when ``due_at`` (UTC) has passed."""

    title = peewee.TextField()
    due_at = UTCDateTimeField()
    #: None for a one-off; ``daily``, ``weekdays``, ``weekly`` or an RFC 5545 ``RRULE``.
    recurrence = peewee.TextField(null=True)
    status = ChoiceField(ReminderStatus, default=ReminderStatus.PENDING)
    kind = ChoiceField(ReminderKind, default=ReminderKind.REMINDER)
    caller_phone = peewee.CharField(max_length=32, null=True)
    created_by_session = peewee.ForeignKeyField(
        AgentSession, null=True, backref="reminders", on_delete="SET NULL"
    )
    created_at = UTCDateTimeField(default=utcnow)
    delivered_at = UTCDateTimeField(null=True)
    #: How it reached the owner: ``announced_in_call``, ``called``, ``texted``, ``failed``...
    delivery_outcome = peewee.CharField(max_length=32, null=True)
    error = peewee.TextField(null=True)
    #: The daemon that claimed the occurrence (``delivering``): another delivers it again
    #: only once that one is gone.
    claimed_by = peewee.CharField(max_length=32, null=True)

    class Meta:
        table_name = "reminders"
        # The scheduler's one query: pending reminders in due order.
        indexes = ((("status", "due_at"), False),)


class CallGoal(TarsModel):
    """An outbound call TARS places for the owner, with the objective the call pursues."""

    contact = peewee.ForeignKeyField(Contact, null=True, backref="call_goals", on_delete="SET NULL")
    contact_name = peewee.CharField(max_length=100)
    phone = PhoneField()
    objective = peewee.TextField()
    status = ChoiceField(GoalStatus, default=GoalStatus.PENDING, index=True)
    call_sid = peewee.CharField(max_length=64, null=True, index=True)
    #: The (owner's) session that asked for the call.
    parent_session = peewee.ForeignKeyField(
        AgentSession, null=True, backref="goals_requested", on_delete="SET NULL"
    )
    #: The goal call's own session, once the callee answered.
    session = peewee.ForeignKeyField(AgentSession, null=True, backref="+", on_delete="SET NULL")
    #: What the goal session recorded with ``report_goal_outcome``.
    outcome = peewee.TextField(null=True)
    #: The text model's summary routed to the owner when the call ended.
    summary = peewee.TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    ended_at = UTCDateTimeField(null=True)
    #: The daemon that places the call, then the one that runs its session: a goal that
    #: daemon leaves dialing or in progress when it is gone is reported failed.
    daemon_id = peewee.CharField(max_length=32, null=True)

    class Meta:
        table_name = "call_goals"


class Transfer(TarsModel):
    """A call put through to the owner (screened: the caller asked, the owner decided) or
    the owner's call connected to someone (``connect_call``), and how it went."""

    kind = ChoiceField(TransferKind)
    status = ChoiceField(TransferStatus, index=True)
    #: The session that asked (the caller's; for ``connect``, the owner's).
    caller_session = peewee.ForeignKeyField(
        AgentSession, null=True, backref="+", on_delete="SET NULL"
    )
    caller_call_sid = peewee.CharField(max_length=64)
    caller_number = peewee.CharField(max_length=32)
    caller_name = peewee.CharField(max_length=100)
    #: Why, in the caller's words (quoted as such).
    reason = peewee.TextField()
    #: Whom the call is put through to: the owner's phone, or the number connected to.
    target_number = peewee.CharField(max_length=32)
    target_name = peewee.CharField(max_length=100, null=True)
    #: ``live_call`` (a note in the owner's call) or ``screening_call`` (TARS phoned them).
    asked_by = peewee.CharField(max_length=16, null=True)
    #: The session in which the owner decided: their live call or the screening call.
    owner_session = peewee.ForeignKeyField(
        AgentSession, null=True, backref="+", on_delete="SET NULL"
    )
    #: The owner's leg that is redirected into the room.
    owner_call_sid = peewee.CharField(max_length=64, null=True)
    screening_call_sid = peewee.CharField(max_length=64, null=True, index=True)
    #: The ``<Conference>`` both legs join.
    room = peewee.CharField(max_length=64, null=True)
    #: Why it ended as it did, for an operator.
    detail = peewee.TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    decided_at = UTCDateTimeField(null=True)
    ended_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "transfers"


class StreamToken(TarsModel):
    """What a call is, as its signed voice webhook (or TARS placing it) said, and the
    one-time token its Media Stream's ``start`` must present.

    Only the token's SHA-256 is stored; the token itself travels once, in the TwiML.
    """

    token_hash = peewee.CharField(max_length=64, unique=True)
    #: None for a call TARS places until its stream starts: the SID is not known when the
    #: inline TwiML is written.
    call_sid = peewee.CharField(max_length=64, null=True, index=True)
    account_sid = peewee.CharField(max_length=64)
    # Not E.164-checked: Twilio reports withheld numbers as "Anonymous" and the like.
    from_number = peewee.CharField(max_length=32)
    to_number = peewee.CharField(max_length=32)
    #: Twilio's ``Direction``: ``inbound``, ``outbound-api``...
    direction = peewee.CharField(max_length=32)
    goal = peewee.ForeignKeyField(CallGoal, null=True, backref="+", on_delete="SET NULL")
    reminder = peewee.ForeignKeyField(Reminder, null=True, backref="+", on_delete="SET NULL")
    #: A screening call TARS placed to the owner for this transfer's decision.
    transfer = peewee.ForeignKeyField(Transfer, null=True, backref="+", on_delete="SET NULL")
    #: Twilio's ``StirVerstat`` caller-ID attestation, e.g. ``TN-Validation-Passed-A``.
    stir_verstat = peewee.CharField(max_length=64, null=True)
    issued_at = UTCDateTimeField(default=utcnow)
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "stream_tokens"


class PinLockout(TarsModel):
    """Wrong owner PINs typed from one number, and until when it may not try again.

    In the store, not in memory: a restart (or another daemon on the same database) must
    not hand a guesser three fresh tries.
    """

    phone = peewee.CharField(max_length=32, unique=True)
    #: Wrong PINs since the last lockout (a right PIN deletes the row).
    failures = peewee.IntegerField(default=0)
    #: Lockouts since the last right PIN: each lasts twice as long as the one before.
    lockouts = peewee.IntegerField(default=0)
    locked_until = UTCDateTimeField(null=True)

    class Meta:
        table_name = "pin_lockouts"


class RestIntent(TarsModel):
    """A Twilio REST request that costs money or reaches people (an SMS, a call, a hang-up,
    a redirect), written before it is sent and settled with Twilio's SID after.

    One row per ``key`` (the requester's correlation id with the kind): asked again, the
    request is answered from the row; after a crash, a row still ``sending`` is checked
    against Twilio's own records before anything is sent again.
    """

    key = peewee.CharField(max_length=200, unique=True)
    #: ``sms``, ``call``, ``hang_up`` or ``redirect``.
    kind = peewee.CharField(max_length=16)
    to_number = peewee.CharField(max_length=32)
    from_number = peewee.CharField(max_length=32)
    #: What it takes to send it again (JSON): the body, the TwiML, the call SID...
    request = peewee.TextField()
    #: ``sending`` from just before each request until its outcome is known, then ``sent``
    #: or ``failed`` (Twilio refused it).
    status = peewee.CharField(max_length=16, index=True)
    sid = peewee.CharField(max_length=64, null=True, index=True)
    attempts = peewee.IntegerField(default=0)
    error = peewee.TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    #: When the last request was started: Twilio's record of it is created after this.
    attempted_at = UTCDateTimeField(null=True)
    #: Which run of TARS started it: one still running may still be waiting for its answer.
    attempted_by = peewee.CharField(max_length=32, null=True)
    settled_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "rest_intents"


class Daemon(TarsModel):
    """A TARS daemon on this database: a member of the cluster while it renews its
    heartbeat. Its ``id`` is its run's own (a new one each start)."""

    id = peewee.CharField(max_length=32, primary_key=True)  # type: ignore[assignment]
    host = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    #: The kernel boot and process namespace it runs in: a daemon of the same place whose
    #: process is gone is known dead at once, without waiting for its lease.
    place = peewee.CharField(max_length=80)
    status = ChoiceField(DaemonStatus, default=DaemonStatus.SERVING, index=True)
    started_at = UTCDateTimeField(default=utcnow)
    heartbeat_at = UTCDateTimeField(default=utcnow)
    ended_at = UTCDateTimeField(null=True)
    #: Who closed its calls and took its work when it was lost.
    taken_over_by = peewee.CharField(max_length=32, null=True)

    class Meta:
        table_name = "daemons"


#: Every table, in an order where each table comes after those it references: the seven
#: of the contract, then ``stream_tokens`` (what each call proved at its webhook) and
#: ``pin_lockouts`` (wrong owner PINs by number), ``rest_intents`` (costly REST requests)
#: and ``transfers`` (calls put through to the owner, or the owner's connected to someone).
MODELS: tuple[type[TarsModel], ...] = (
    AgentSession,
    Conversation,
    BroadcastApproval,
    InterSessionMessage,
    Contact,
    Reminder,
    CallGoal,
    Transfer,
    StreamToken,
    PinLockout,
    RestIntent,
    Daemon,
)
