"""Persistence for TARS: peewee models of the contract tables, migrations, and the Store.

Usage: ``store = Store.open(settings.database.url)``; ``store.migrate()`` at boot; each
actor ``store.connect()`` in ``on_start`` and ``store.close()`` when it stops; writes in
``with store.transaction():``.
"""

from __future__ import annotations

from tars_actors.store.database import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SQLITE_PRAGMAS,
    Store,
    StoreError,
    build_database,
    redact_url,
)
from tars_actors.store.fields import (
    E164_PATTERN,
    ChoiceField,
    PhoneField,
    UTCDateTimeField,
    utcnow,
)
from tars_actors.store.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SchemaTooNewError,
)
from tars_actors.store.models import (
    LIVE_DAEMON_STATUSES,
    MODELS,
    AgentSession,
    ApprovalStatus,
    BroadcastApproval,
    CallGoal,
    Contact,
    Conversation,
    Daemon,
    DaemonStatus,
    Direction,
    GoalStatus,
    InterSessionMessage,
    MessageStatus,
    Permission,
    PinLockout,
    Reminder,
    ReminderKind,
    ReminderStatus,
    RestIntent,
    SessionStatus,
    Speaker,
    StreamToken,
    TarsModel,
    Transfer,
    TransferKind,
    TransferStatus,
)

__all__ = [
    "E164_PATTERN",
    "LATEST_VERSION",
    "LIVE_DAEMON_STATUSES",
    "MIGRATIONS",
    "MODELS",
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "SQLITE_PRAGMAS",
    "AgentSession",
    "ApprovalStatus",
    "BroadcastApproval",
    "CallGoal",
    "ChoiceField",
    "Contact",
    "Conversation",
    "Daemon",
    "DaemonStatus",
    "Direction",
    "GoalStatus",
    "InterSessionMessage",
    "MessageStatus",
    "Migration",
    "Permission",
    "PhoneField",
    "PinLockout",
    "Reminder",
    "ReminderKind",
    "ReminderStatus",
    "RestIntent",
    "SchemaTooNewError",
    "SessionStatus",
    "Speaker",
    "Store",
    "StoreError",
    "StreamToken",
    "TarsModel",
    "Transfer",
    "TransferKind",
    "TransferStatus",
    "UTCDateTimeField",
    "build_database",
    "redact_url",
    "utcnow",
]
