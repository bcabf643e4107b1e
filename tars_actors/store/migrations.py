"""Ordered schema migrations, recorded in ``schema_version`` and run at boot by ``Store.migrate``.

Each migration is frozen history: it describes the schema as it was then with plain peewee
fields, never with the current models, so editing a model cannot rewrite an old step.
A model change needs a new migration appended here (``test_store`` checks that the
migrated schema matches the models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import peewee
from playhouse.migrate import SchemaMigrator

from tars_actors.store.fields import UTCDateTimeField, utcnow

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "SchemaTooNewError",
    "SchemaVersion",
    "apply_migrations",
    "read_schema_version",
]

# Any constant will do; it only has to be the same in every TARS process sharing a database.
_PG_MIGRATION_LOCK_KEY = 0x7A125


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer TARS than the one running."""

    def __init__(self, database_version: int, code_version: int) -> None:
        super().__init__(
            f"database schema version {database_version} is newer than this code supports "
            f"(schema version {code_version}); run a TARS release that knows version "
            f"{database_version}, or point [database] url at another database"
        )
        self.database_version = database_version
        self.code_version = code_version


class SchemaVersion(peewee.Model):
    """One row per applied migration; the schema's version is the highest."""

    version = peewee.IntegerField(primary_key=True)
    description = peewee.TextField()
    applied_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_version"


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    description: str
    apply: Callable[[SchemaMigrator], None]


def _frozen_base(database: Any) -> Any:
    class FrozenModel(peewee.Model):
        class Meta:
            # Index names from the table name, as playhouse.migrate names the ones it adds.
            legacy_table_names = False

    # Set after the class body: a Meta attribute named `database` would shadow the argument.
    FrozenModel._meta.set_database(database)
    return FrozenModel


def _v1_initial_schema(migrator: SchemaMigrator) -> None:
    base = _frozen_base(migrator.database)

    class AgentSession(base):  # type: ignore[misc,valid-type]
        name = peewee.CharField(max_length=100, index=True)
        call_sid = peewee.CharField(max_length=64, null=True, index=True)
        stream_sid = peewee.CharField(max_length=64, null=True)
        phone_number = peewee.CharField(max_length=32)
        permission = peewee.CharField(max_length=32)
        status = peewee.CharField(max_length=32, index=True)
        purpose = peewee.TextField(null=True)
        parent_session = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")
        direction = peewee.CharField(max_length=32)
        started_at = peewee.DateTimeField()
        ended_at = peewee.DateTimeField(null=True)
        end_reason = peewee.CharField(max_length=64, null=True)

        class Meta:
            table_name = "agent_sessions"

    class Conversation(base):  # type: ignore[misc,valid-type]
        session = peewee.ForeignKeyField(AgentSession, on_delete="CASCADE", index=False)
        speaker = peewee.CharField(max_length=32)
        text = peewee.TextField()
        spoken_at = peewee.DateTimeField()
        seq = peewee.IntegerField()

        class Meta:
            table_name = "conversations"
            indexes = ((("session", "seq"), True),)

    class BroadcastApproval(base):  # type: ignore[misc,valid-type]
        requester_session = peewee.ForeignKeyField(AgentSession, null=True, on_delete="SET NULL")
        requester_name = peewee.CharField(max_length=100)
        body = peewee.TextField()
        status = peewee.CharField(max_length=32, index=True)
        created_at = peewee.DateTimeField()
        decided_at = peewee.DateTimeField(null=True)

        class Meta:
            table_name = "broadcast_approvals"

    class InterSessionMessage(base):  # type: ignore[misc,valid-type]
        sender_session = peewee.ForeignKeyField(
            AgentSession, null=True, backref="+", on_delete="SET NULL"
        )
        sender_name = peewee.CharField(max_length=100)
        target = peewee.CharField(max_length=100)
        target_session = peewee.ForeignKeyField(
            AgentSession, null=True, backref="+", on_delete="SET NULL"
        )
        message_type = peewee.CharField(max_length=32)
        body = peewee.TextField()
        status = peewee.CharField(max_length=32, index=True)
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()
        delivered_at = peewee.DateTimeField(null=True)
        read_at = peewee.DateTimeField(null=True)
        error = peewee.TextField(null=True)
        approval = peewee.ForeignKeyField(BroadcastApproval, null=True, on_delete="SET NULL")

        class Meta:
            table_name = "inter_session_messages"

    class Contact(base):  # type: ignore[misc,valid-type]
        name = peewee.CharField(max_length=100, index=True)
        phone = peewee.CharField(max_length=16, unique=True)
        relation = peewee.CharField(max_length=100, null=True)
        created_at = peewee.DateTimeField()

        class Meta:
            table_name = "contacts"

    class Reminder(base):  # type: ignore[misc,valid-type]
        title = peewee.TextField()
        due_at = peewee.DateTimeField()
        recurrence = peewee.TextField(null=True)
        status = peewee.CharField(max_length=32)
        created_by_session = peewee.ForeignKeyField(AgentSession, null=True, on_delete="SET NULL")
        created_at = peewee.DateTimeField()
        delivered_at = peewee.DateTimeField(null=True)
        delivery_outcome = peewee.CharField(max_length=32, null=True)
        error = peewee.TextField(null=True)

        class Meta:
            table_name = "reminders"
            indexes = ((("status", "due_at"), False),)

    class CallGoal(base):  # type: ignore[misc,valid-type]
        contact = peewee.ForeignKeyField(Contact, null=True, on_delete="SET NULL")
        contact_name = peewee.CharField(max_length=100)
        phone = peewee.CharField(max_length=16)
        objective = peewee.TextField()
        status = peewee.CharField(max_length=32, index=True)
        call_sid = peewee.CharField(max_length=64, null=True, index=True)
        parent_session = peewee.ForeignKeyField(AgentSession, null=True, on_delete="SET NULL")
        summary = peewee.TextField(null=True)
        created_at = peewee.DateTimeField()
        ended_at = peewee.DateTimeField(null=True)

        class Meta:
            table_name = "call_goals"

    migrator.database.create_tables(
        [
            AgentSession,
            Conversation,
            BroadcastApproval,
            InterSessionMessage,
            Contact,
            Reminder,
            CallGoal,
        ]
    )


def _v2_call_details(migrator: SchemaMigrator) -> None:
    base = _frozen_base(migrator.database)

    class AgentSession(base):  # type: ignore[misc,valid-type]
        class Meta:
            table_name = "agent_sessions"

    migrator.migrate(
        migrator.add_column("agent_sessions", "duration_seconds", peewee.FloatField(null=True)),
        migrator.add_column("conversations", "heard", peewee.BooleanField(default=True)),
        migrator.add_column("inter_session_messages", "attempts", peewee.IntegerField(default=0)),
        migrator.add_column(
            "reminders", "kind", peewee.CharField(max_length=32, default="reminder")
        ),
        migrator.add_column(
            "reminders", "caller_phone", peewee.CharField(max_length=32, null=True)
        ),
        migrator.add_column("call_goals", "outcome", peewee.TextField(null=True)),
        migrator.add_column(
            "call_goals",
            "session_id",
            peewee.ForeignKeyField(
                AgentSession, field=AgentSession.id, null=True, index=True, on_delete="SET NULL"
            ),
        ),
    )


def _v3_stream_tokens(migrator: SchemaMigrator) -> None:
    base = _frozen_base(migrator.database)

    class Reminder(base):  # type: ignore[misc,valid-type]
        class Meta:
            table_name = "reminders"

    class CallGoal(base):  # type: ignore[misc,valid-type]
        class Meta:
            table_name = "call_goals"

    class StreamToken(base):  # type: ignore[misc,valid-type]
        token_hash = peewee.CharField(max_length=64, unique=True)
        call_sid = peewee.CharField(max_length=64, null=True, index=True)
        account_sid = peewee.CharField(max_length=64)
        from_number = peewee.CharField(max_length=32)
        to_number = peewee.CharField(max_length=32)
        direction = peewee.CharField(max_length=32)
        goal = peewee.ForeignKeyField(CallGoal, null=True, backref="+", on_delete="SET NULL")
        reminder = peewee.ForeignKeyField(Reminder, null=True, backref="+", on_delete="SET NULL")
        stir_verstat = peewee.CharField(max_length=64, null=True)
        issued_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField()
        used_at = peewee.DateTimeField(null=True)

        class Meta:
            table_name = "stream_tokens"

    migrator.database.create_tables([StreamToken])


def _v4_pin_lockouts(migrator: SchemaMigrator) -> None:
    class PinLockout(_frozen_base(migrator.database)):  # type: ignore[misc]
        phone = peewee.CharField(max_length=32, unique=True)
        failures = peewee.IntegerField(default=0)
        lockouts = peewee.IntegerField(default=0)
        locked_until = peewee.DateTimeField(null=True)

        class Meta:
            table_name = "pin_lockouts"

    migrator.database.create_tables([PinLockout])


def _v5_rest_intents(migrator: SchemaMigrator) -> None:
    class RestIntent(_frozen_base(migrator.database)):  # type: ignore[misc]
        key = peewee.CharField(max_length=200, unique=True)
        kind = peewee.CharField(max_length=16)
        to_number = peewee.CharField(max_length=32)
        from_number = peewee.CharField(max_length=32)
        request = peewee.TextField()
        status = peewee.CharField(max_length=16, index=True)
        sid = peewee.CharField(max_length=64, null=True, index=True)
        attempts = peewee.IntegerField(default=0)
        error = peewee.TextField(null=True)
        created_at = peewee.DateTimeField()
        attempted_at = peewee.DateTimeField(null=True)
        attempted_by = peewee.CharField(max_length=32, null=True)
        settled_at = peewee.DateTimeField(null=True)

        class Meta:
            table_name = "rest_intents"

    migrator.database.create_tables([RestIntent])


def _v6_transfers(migrator: SchemaMigrator) -> None:
    base = _frozen_base(migrator.database)

    class AgentSession(base):  # type: ignore[misc,valid-type]
        class Meta:
            table_name = "agent_sessions"

    class Transfer(base):  # type: ignore[misc,valid-type]
        kind = peewee.CharField(max_length=32)
        status = peewee.CharField(max_length=32, index=True)
        caller_session = peewee.ForeignKeyField(
            AgentSession, null=True, backref="+", on_delete="SET NULL"
        )
        caller_call_sid = peewee.CharField(max_length=64)
        caller_number = peewee.CharField(max_length=32)
        caller_name = peewee.CharField(max_length=100)
        reason = peewee.TextField()
        target_number = peewee.CharField(max_length=32)
        target_name = peewee.CharField(max_length=100, null=True)
        asked_by = peewee.CharField(max_length=16, null=True)
        owner_session = peewee.ForeignKeyField(
            AgentSession, null=True, backref="+", on_delete="SET NULL"
        )
        owner_call_sid = peewee.CharField(max_length=64, null=True)
        screening_call_sid = peewee.CharField(max_length=64, null=True, index=True)
        room = peewee.CharField(max_length=64, null=True)
        detail = peewee.TextField(null=True)
        created_at = peewee.DateTimeField()
        decided_at = peewee.DateTimeField(null=True)
        ended_at = peewee.DateTimeField(null=True)

        class Meta:
            table_name = "transfers"

    migrator.database.create_tables([Transfer])
    migrator.migrate(
        migrator.add_column(
            "stream_tokens",
            "transfer_id",
            peewee.ForeignKeyField(
                Transfer, field=Transfer.id, null=True, index=True, on_delete="SET NULL"
            ),
        )
    )


def _v7_cluster(migrator: SchemaMigrator) -> None:
    class Daemon(_frozen_base(migrator.database)):  # type: ignore[misc]
        id = peewee.CharField(max_length=32, primary_key=True)
        host = peewee.CharField(max_length=255)
        pid = peewee.IntegerField()
        place = peewee.CharField(max_length=80)
        status = peewee.CharField(max_length=32, index=True)
        started_at = peewee.DateTimeField()
        heartbeat_at = peewee.DateTimeField()
        ended_at = peewee.DateTimeField(null=True)
        taken_over_by = peewee.CharField(max_length=32, null=True)

        class Meta:
            table_name = "daemons"

    migrator.database.create_tables([Daemon])
    migrator.migrate(
        migrator.add_column(
            "agent_sessions", "daemon_id", peewee.CharField(max_length=32, null=True)
        ),
        migrator.add_index("agent_sessions", ("daemon_id",), False),
        migrator.add_column(
            "inter_session_messages", "held_by", peewee.CharField(max_length=32, null=True)
        ),
        migrator.add_index("inter_session_messages", ("held_by",), False),
        migrator.add_column("reminders", "claimed_by", peewee.CharField(max_length=32, null=True)),
        migrator.add_column("call_goals", "daemon_id", peewee.CharField(max_length=32, null=True)),
    )


#: Every migration, in order; append only.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="initial schema: the seven contract tables",
        apply=_v1_initial_schema,
    ),
    Migration(
        version=2,
        description=(
            "call details: session duration, unheard assistant speech, callback reminders, "
            "goal outcome and goal session, message delivery attempts"
        ),
        apply=_v2_call_details,
    ),
    Migration(
        version=3,
        description="stream tokens: what each call's webhook proved, and its one-time token",
        apply=_v3_stream_tokens,
    ),
    Migration(
        version=4,
        description="pin lockouts: wrong owner PINs by number, and until when it is locked",
        apply=_v4_pin_lockouts,
    ),
    Migration(
        version=5,
        description="rest intents: costly Twilio requests, written before they are sent",
        apply=_v5_rest_intents,
    ),
    Migration(
        version=6,
        description="transfers: calls put through to the owner, and the owner's connected "
        "to someone; a screening call's stream token names its transfer",
        apply=_v6_transfers,
    ),
    Migration(
        version=7,
        description="cluster: the daemons on this database and their heartbeats; which "
        "daemon runs each call, holds each message, claimed each reminder, runs each goal",
        apply=_v7_cluster,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def read_schema_version(database: Any) -> int:
    """The database's schema version; 0 for a database TARS has never migrated."""
    if not database.table_exists(SchemaVersion._meta.table_name):
        return 0
    version = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return int(version or 0)


def apply_migrations(
    database: Any,
    *,
    target: int | None = None,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> list[int]:
    """Bring ``database`` up to ``target`` (default: the latest version); return what ran.

    Everything runs in one transaction, so a failed step leaves the previous version intact
    (DDL is transactional on both SQLite and PostgreSQL). :class:`SchemaVersion` must be
    bound to ``database``; ``Store.migrate`` sees to that.
    """
    latest = migrations[-1].version
    if target is None:
        target = latest
    if not 0 <= target <= latest:
        raise ValueError(f"no schema version {target}: versions run from 1 to {latest}")
    if SchemaVersion._meta.database is not database:
        raise RuntimeError("SchemaVersion is not bound to the database being migrated")
    migrator = SchemaMigrator.from_database(database)
    applied: list[int] = []
    # On SQLite this also turns foreign keys off around the transaction: table rebuilds
    # (how SQLite adds NOT NULL) drop and recreate referenced tables.
    is_postgres = isinstance(database, peewee.PostgresqlDatabase)
    is_sqlite = isinstance(database, peewee.SqliteDatabase)
    with migrator.migration_context():
        if is_postgres:
            # Two daemons booting at once must not both run the same steps.
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK_KEY,))
        SchemaVersion.create_table(safe=True)
        current = read_schema_version(database)
        if current > latest:
            raise SchemaTooNewError(current, latest)
        for migration in migrations:
            if current < migration.version <= target:
                migration.apply(migrator)
                SchemaVersion.create(version=migration.version, description=migration.description)
                applied.append(migration.version)
        if applied and is_sqlite:
            broken = database.execute_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows with dangling foreign keys: {broken}")
    return applied
