"""The store on SQLite and PostgreSQL: models, UTC times, migrations and concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import peewee
import pytest

from tars_actors.store import (
    LATEST_VERSION,
    MIGRATIONS,
    MODELS,
    AgentSession,
    ApprovalStatus,
    BroadcastApproval,
    CallGoal,
    Contact,
    Conversation,
    Direction,
    GoalStatus,
    InterSessionMessage,
    MessageStatus,
    Migration,
    Permission,
    Reminder,
    ReminderKind,
    ReminderStatus,
    SchemaTooNewError,
    SessionStatus,
    Speaker,
    Store,
    StoreError,
    build_database,
)
from tars_actors.store.migrations import SchemaVersion, apply_migrations

pytest_plugins = ("tests.pg",)

BUDAPEST_SUMMER = timezone(timedelta(hours=2))
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(make_url: Callable[[], str]) -> Iterator[Store]:
    """A migrated store with a connection open on the test's thread."""
    store = Store.open(make_url())
    store.migrate()
    store.connect()
    yield store
    store.shutdown()


def make_session(name: str = "owner", **fields: Any) -> AgentSession:
    values: dict[str, Any] = {
        "name": name,
        "phone_number": "+15550000001",
        "permission": Permission.OWNER,
        "direction": Direction.INBOUND,
        "started_at": T0,
    }
    return AgentSession.create(**(values | fields))


# Models


def test_every_table_round_trips_its_columns(store: Store) -> None:
    with store.transaction():
        owner = make_session(
            call_sid="CA0001",
            stream_sid="MZ0001",
            status=SessionStatus.ACTIVE,
            purpose="owner's main call",
        )
        goal_session = make_session(
            "goal-call-anna",
            phone_number="+36201234567",
            permission=Permission.GOAL,
            direction=Direction.OUTBOUND,
            parent_session=owner,
            status=SessionStatus.ENDED,
            ended_at=T0 + timedelta(minutes=3),
            end_reason="completed",
            duration_seconds=181.5,
        )
        Conversation.create(session=owner, speaker=Speaker.CALLER, text="Hi", seq=1, spoken_at=T0)
        Conversation.create(
            session=owner, speaker=Speaker.ASSISTANT, text="Hello, how...", seq=2, heard=False
        )
        approval = BroadcastApproval.create(
            requester_session=goal_session, requester_name="goal-call-anna", body="Dinner at 8?"
        )
        message = InterSessionMessage.create(
            sender_session=goal_session,
            sender_name="goal-call-anna",
            target="broadcast",
            message_type="broadcast",
            body="Dinner at 8?",
            status=MessageStatus.AWAITING_APPROVAL,
            approval=approval,
            attempts=1,
            error="owner busy",
        )
        anna = Contact.create(name="Anna", phone="+36201234567", relation="sister")
        reminder = Reminder.create(
            title="Call the plumber",
            due_at=datetime(2025, 6, 2, 9, 0, tzinfo=BUDAPEST_SUMMER),
            recurrence="weekdays",
            kind=ReminderKind.CALLBACK,
            caller_phone="+15550000002",
            created_by_session=owner,
        )
        goal = CallGoal.create(
            contact=anna,
            contact_name="Anna",
            phone="+36201234567",
            objective="Ask whether dinner at 8 works",
            status=GoalStatus.COMPLETED,
            call_sid="CA0002",
            parent_session=owner,
            session=goal_session,
            outcome="Yes, 8 works",
            summary="Anna confirmed dinner at 8.",
            ended_at=T0 + timedelta(minutes=3),
        )

    read_owner = AgentSession.get(AgentSession.call_sid == "CA0001")
    assert (read_owner.name, read_owner.stream_sid, read_owner.purpose) == (
        "owner",
        "MZ0001",
        "owner's main call",
    )
    assert read_owner.status is SessionStatus.ACTIVE
    assert read_owner.permission is Permission.OWNER
    assert read_owner.direction is Direction.INBOUND
    assert read_owner.started_at == T0
    assert read_owner.ended_at is None
    assert read_owner.duration_seconds is None
    assert [s.name for s in read_owner.child_sessions] == ["goal-call-anna"]

    read_goal_session = AgentSession.get_by_id(goal_session.id)
    assert read_goal_session.parent_session == owner
    assert read_goal_session.ended_at == T0 + timedelta(minutes=3)
    assert read_goal_session.end_reason == "completed"
    assert read_goal_session.duration_seconds == 181.5

    lines = list(read_owner.transcript.order_by(Conversation.seq))
    assert [(line.speaker, line.text, line.heard) for line in lines] == [
        (Speaker.CALLER, "Hi", True),
        (Speaker.ASSISTANT, "Hello, how...", False),
    ]
    assert lines[0].spoken_at == T0

    read_message = InterSessionMessage.get_by_id(message.id)
    assert read_message.status is MessageStatus.AWAITING_APPROVAL
    assert read_message.approval == approval
    assert BroadcastApproval.get_by_id(approval.id).status is ApprovalStatus.PENDING
    assert read_message.sender_session == goal_session
    assert read_message.target_session is None
    assert (read_message.attempts, read_message.error) == (1, "owner busy")
    assert read_message.delivered_at is None

    read_reminder = Reminder.get_by_id(reminder.id)
    assert read_reminder.due_at == datetime(2025, 6, 2, 7, 0, tzinfo=UTC)
    assert read_reminder.due_at.tzinfo is UTC
    assert read_reminder.status is ReminderStatus.PENDING
    assert read_reminder.kind is ReminderKind.CALLBACK
    assert (read_reminder.recurrence, read_reminder.caller_phone) == ("weekdays", "+15550000002")
    assert read_reminder.created_by_session == owner

    read_goal = CallGoal.get_by_id(goal.id)
    assert read_goal.contact == anna
    assert [goal.contact_name for goal in anna.call_goals] == ["Anna"]
    assert read_goal.session == goal_session
    assert read_goal.parent_session == owner
    assert (read_goal.status, read_goal.outcome) == (GoalStatus.COMPLETED, "Yes, 8 works")
    assert read_goal.summary == "Anna confirmed dinner at 8."
    assert read_goal.created_at.tzinfo is UTC


def test_due_query_compares_instants_whatever_zone_they_were_written_in(store: Store) -> None:
    with store.transaction():
        # 13:30 in Budapest is 11:30 UTC: due at 12:00 UTC even though "13:30" > "12:00".
        Reminder.create(
            title="due, written in +02:00",
            due_at=T0.astimezone(BUDAPEST_SUMMER) - timedelta(minutes=30),
        )
        Reminder.create(title="due now", due_at=T0)
        Reminder.create(title="not yet", due_at=T0 + timedelta(microseconds=1))
        Reminder.create(title="cancelled", due_at=T0, status=ReminderStatus.CANCELLED)

    due = (
        Reminder.select()
        .where(Reminder.status == ReminderStatus.PENDING, Reminder.due_at <= T0)
        .order_by(Reminder.due_at)
    )
    assert [reminder.title for reminder in due] == ["due, written in +02:00", "due now"]


def test_naive_datetime_is_refused_naming_the_column(store: Store) -> None:
    with pytest.raises(ValueError, match=r"reminders\.due_at: naive datetime"):
        Reminder.create(title="when?", due_at=datetime(2025, 6, 1, 12, 0))


def test_status_outside_its_vocabulary_is_refused_naming_the_column(store: Store) -> None:
    with pytest.raises(ValueError, match=r"agent_sessions\.status: 'on hold' is not one of"):
        make_session(status="on hold")


def test_contact_phone_must_be_e164(store: Store) -> None:
    with pytest.raises(ValueError, match=r"contacts\.phone: '06 20 123 4567' is not an E\.164"):
        Contact.create(name="Anna", phone="06 20 123 4567")
    assert Contact.select().count() == 0


def test_contact_phone_is_unique(store: Store) -> None:
    Contact.create(name="Anna", phone="+36201234567")
    with pytest.raises(peewee.IntegrityError), store.transaction():
        Contact.create(name="Anna again", phone="+36201234567")


def test_looking_up_a_withheld_caller_id_finds_no_contact(store: Store) -> None:
    Contact.create(name="Anna", phone="+36201234567")
    assert Contact.get_or_none(Contact.phone == "Anonymous") is None


def test_transcript_line_numbers_are_unique_within_a_session(store: Store) -> None:
    session = make_session()
    Conversation.create(session=session, speaker=Speaker.CALLER, text="Hi", seq=1)
    with pytest.raises(peewee.IntegrityError), store.transaction():
        Conversation.create(session=session, speaker=Speaker.CALLER, text="Hi again", seq=1)


def test_a_row_pointing_at_a_missing_session_is_refused(store: Store) -> None:
    with pytest.raises(peewee.IntegrityError), store.transaction():
        Conversation.create(session=9999, speaker=Speaker.CALLER, text="Hi", seq=1)


def test_deleting_a_session_deletes_its_transcript_and_keeps_its_messages(store: Store) -> None:
    session = make_session()
    Conversation.create(session=session, speaker=Speaker.CALLER, text="Hi", seq=1)
    message = InterSessionMessage.create(
        sender_session=session, sender_name="owner", target="user", message_type="note", body="x"
    )
    with store.transaction():
        session.delete_instance()
    assert Conversation.select().count() == 0
    assert InterSessionMessage.get_by_id(message.id).sender_session is None


def test_saving_a_message_touches_updated_at(store: Store) -> None:
    message = InterSessionMessage.create(
        sender_name="owner", target="user", message_type="note", body="x", updated_at=T0
    )
    assert InterSessionMessage.get_by_id(message.id).updated_at > T0
    stale = datetime(2020, 1, 1, tzinfo=UTC)
    InterSessionMessage.update(updated_at=stale).execute()
    message.status = MessageStatus.DELIVERED
    message.save()
    assert InterSessionMessage.get_by_id(message.id).updated_at > stale


def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    def write_then_crash() -> None:
        with store.transaction():
            make_session()
            raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        write_then_crash()
    assert AgentSession.select().count() == 0


# Connections and transactions


def test_a_thread_that_never_connected_cannot_query(store: Store) -> None:
    errors: list[Exception] = []

    def query() -> None:
        try:
            AgentSession.select().count()
        except peewee.InterfaceError as error:
            errors.append(error)

    thread = threading.Thread(target=query)
    thread.start()
    thread.join(timeout=10)
    assert len(errors) == 1
    assert "connection not opened" in str(errors[0])


def test_sqlite_connections_use_wal_normal_sync_foreign_keys_and_a_busy_timeout(
    tmp_path: Any,
) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/tars.db")
    with store.connection():
        database: Any = store.database

        def pragma(name: str) -> Any:
            return database.execute_sql(f"PRAGMA {name}").fetchone()[0]

        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 10_000
    store.shutdown()


def test_sqlite_transactions_take_the_write_lock_at_begin(tmp_path: Any) -> None:
    path = tmp_path / "tars.db"
    store = Store.open(f"sqlite:///{path}")
    store.migrate()
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        # Nothing read or written yet in the store's transaction, and another writer is
        # already shut out.
        with (
            store.connection(),
            store.transaction(),
            pytest.raises(sqlite3.OperationalError, match="database is locked"),
        ):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
        store.shutdown()


def test_concurrent_read_modify_write_transactions_lose_no_update(store: Store) -> None:
    threads_count, rounds = 8, 200
    counter = InterSessionMessage.create(
        sender_name="owner", target="user", message_type="note", body="count me"
    )
    start = threading.Barrier(threads_count)
    errors: list[Exception] = []

    def increment() -> None:
        store.connect()
        try:
            start.wait(timeout=30)
            for _ in range(rounds):
                with store.transaction():
                    query = InterSessionMessage.select().where(InterSessionMessage.id == counter.id)
                    row = store.for_update(query).get()
                    row.attempts += 1
                    row.save()
        except Exception as error:
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=increment) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert InterSessionMessage.get_by_id(counter.id).attempts == threads_count * rounds


# Migrations


V1_ROW_TIME = "2024-05-01 09:30:00.000000"


def insert_v1_rows(database: Any) -> dict[str, int]:
    """Rows as TARS at schema version 1 wrote them, with that version's columns only."""

    def insert(table: str, **values: Any) -> int:
        columns = ("id", *values)
        row_id: int = (
            peewee.Table(table, columns, primary_key="id").bind(database).insert(**values).execute()
        )
        return row_id

    session = insert(
        "agent_sessions",
        name="owner",
        call_sid="CA0001",
        stream_sid="MZ0001",
        phone_number="+15550000001",
        permission="owner",
        status="ended",
        direction="inbound",
        started_at=V1_ROW_TIME,
        ended_at=V1_ROW_TIME,
        end_reason="caller hung up",
    )
    line = insert(
        "conversations",
        session_id=session,
        speaker="assistant",
        text="See you tomorrow",
        spoken_at=V1_ROW_TIME,
        seq=1,
    )
    message = insert(
        "inter_session_messages",
        sender_session_id=session,
        sender_name="owner",
        target="user",
        message_type="note",
        body="Buy milk",
        status="queued",
        created_at=V1_ROW_TIME,
        updated_at=V1_ROW_TIME,
    )
    contact = insert("contacts", name="Anna", phone="+36201234567", created_at=V1_ROW_TIME)
    reminder = insert(
        "reminders",
        title="Call the plumber",
        due_at=V1_ROW_TIME,
        status="pending",
        created_by_session_id=session,
        created_at=V1_ROW_TIME,
    )
    goal = insert(
        "call_goals",
        contact_id=contact,
        contact_name="Anna",
        phone="+36201234567",
        objective="Ask about dinner",
        status="completed",
        parent_session_id=session,
        summary="Dinner is on.",
        created_at=V1_ROW_TIME,
    )
    return {
        "session": session,
        "line": line,
        "message": message,
        "contact": contact,
        "reminder": reminder,
        "goal": goal,
    }


def test_fresh_database_migrates_to_the_latest_version(make_url: Callable[[], str]) -> None:
    store = Store.open(make_url())
    assert store.schema_version() == 0
    assert store.migrate() == [migration.version for migration in MIGRATIONS]
    assert store.schema_version() == LATEST_VERSION
    store.shutdown()


def test_migrating_twice_is_a_no_op(store: Store) -> None:
    make_session()
    assert store.migrate() == []
    assert store.schema_version() == LATEST_VERSION
    assert SchemaVersion.select().count() == len(MIGRATIONS)
    assert AgentSession.select().count() == 1


def test_v1_database_upgrades_without_losing_rows(make_url: Callable[[], str]) -> None:
    url = make_url()
    old = Store.open(url)
    assert old.migrate(target=1) == [1]
    with old.connection(), old.transaction():
        ids = insert_v1_rows(old.database)
    old.shutdown()

    store = Store.open(url)
    assert store.schema_version() == 1
    assert store.migrate() == list(range(2, LATEST_VERSION + 1))
    with store.connection():
        written = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
        session = AgentSession.get_by_id(ids["session"])
        assert (session.name, session.call_sid, session.end_reason) == (
            "owner",
            "CA0001",
            "caller hung up",
        )
        assert session.status is SessionStatus.ENDED
        assert session.started_at == written
        assert session.duration_seconds is None

        line = Conversation.get_by_id(ids["line"])
        assert (line.session.id, line.text, line.seq) == (ids["session"], "See you tomorrow", 1)
        assert line.heard is True

        message = InterSessionMessage.get_by_id(ids["message"])
        assert (message.body, message.status) == ("Buy milk", MessageStatus.QUEUED)
        assert message.attempts == 0

        reminder = Reminder.get_by_id(ids["reminder"])
        assert (reminder.title, reminder.due_at) == ("Call the plumber", written)
        assert reminder.kind is ReminderKind.REMINDER
        assert reminder.caller_phone is None

        goal = CallGoal.get_by_id(ids["goal"])
        assert goal.contact == Contact.get_by_id(ids["contact"])
        assert goal.summary == "Dinner is on."
        assert goal.outcome is None
        assert goal.session is None

        # The new columns take writes, and the old rows' references still hold.
        with store.transaction():
            Conversation.create(
                session=session, speaker=Speaker.ASSISTANT, text="Bye", seq=2, heard=False
            )
            goal.session = session
            goal.outcome = "agreed"
            goal.save()
        assert [line.heard for line in session.transcript.order_by(Conversation.seq)] == [
            True,
            False,
        ]
        assert CallGoal.get_by_id(ids["goal"]).session == session
    store.shutdown()


def schema_of(database: Any) -> dict[str, Any]:
    """Columns, indexes and foreign keys of every contract table, as the database reports them."""
    schema: dict[str, Any] = {}
    for model in MODELS:
        table = model._meta.table_name
        schema[table] = {
            "columns": {
                (column.name, column.data_type.lower(), column.null, column.primary_key)
                for column in database.get_columns(table)
            },
            "indexes": {
                (index.name, tuple(index.columns), index.unique)
                for index in database.get_indexes(table)
            },
            "foreign_keys": {
                (key.column, key.dest_table, key.dest_column, key.on_delete)
                for key in database.get_foreign_keys(table)
            },
        }
    return schema


def test_migrated_schema_is_the_schema_of_the_models(make_url: Callable[[], str]) -> None:
    migrated = Store.open(make_url())
    migrated.migrate(target=1)
    migrated.migrate()
    created = Store.open(make_url())  # binds the models to this one
    with created.connection():
        created.database.create_tables(MODELS)
        expected = schema_of(created.database)
    with migrated.connection():
        actual = schema_of(migrated.database)
    assert actual == expected
    migrated.shutdown()
    created.shutdown()


def test_database_newer_than_the_code_is_refused_naming_both_versions(store: Store) -> None:
    SchemaVersion.create(version=LATEST_VERSION + 1, description="from a newer TARS")
    newer = LATEST_VERSION + 1
    with pytest.raises(
        SchemaTooNewError,
        match=rf"database schema version {newer} is newer .*\(schema version {LATEST_VERSION}\)",
    ):
        store.migrate()
    assert store.schema_version() == newer


def test_a_failing_migration_leaves_the_previous_version_intact(store: Store) -> None:
    def add_a_column_then_fail(migrator: Any) -> None:
        migrator.migrate(migrator.add_column("contacts", "nickname", peewee.TextField(null=True)))
        raise RuntimeError("step failed halfway")

    broken = Migration(
        version=LATEST_VERSION + 1, description="broken", apply=add_a_column_then_fail
    )
    Contact.create(name="Anna", phone="+36201234567")
    with pytest.raises(RuntimeError, match="step failed halfway"):
        apply_migrations(store.database, migrations=(*MIGRATIONS, broken))
    assert store.schema_version() == LATEST_VERSION
    assert "nickname" not in {column.name for column in store.database.get_columns("contacts")}
    assert Contact.get(Contact.phone == "+36201234567").name == "Anna"


# URLs


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgress://tars:test-password@db.invalid/tars", "unsupported scheme"),
        ("sqlite://tars.db", "three slashes"),
        ("sqlite:///:memory:", "in-memory"),
        ("postgresql://tars:test-password@db.invalid", "no database name"),
    ],
)
def test_unusable_database_url_is_one_clear_error_without_the_password(
    url: str, problem: str
) -> None:
    with pytest.raises(StoreError, match=r"\[database\] url") as raised:
        build_database(url)
    assert problem in str(raised.value)
    assert "test-password" not in str(raised.value)
