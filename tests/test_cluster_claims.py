"""Several daemons on one database: each due reminder, each REST request left unsure and each
goal left behind by a daemon that is gone is taken up by exactly one live daemon, and what a
live daemon holds is left to it.

Two daemons are played in one process: the models are bound to one database, and each
daemon is a :class:`Store` on it with its own ``daemon_id`` (its connections are per thread).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pykka
import pytest
from structlog.testing import capture_logs

from actors.reminder_scheduler import ReminderScheduler
from actors.telephony import RetryPolicy, Telephony
from tars_actors.cluster.messages import TakeUp
from tars_actors.goals.desk import INTERRUPTED, GoalDesk, save_summary
from tars_actors.messaging.ledger import MessageLedger
from tars_actors.messaging.routing import Presence, Switchboard
from tars_actors.reminders.book import ReminderBook, RemindersChanged
from tars_actors.runtime.settings import Secrets, Settings
from tars_actors.runtime.timers import ManualTimers
from tars_actors.sim.twilio_api import Operation, TwilioRestStandIn
from tars_actors.store import (
    CallGoal,
    Daemon,
    DaemonStatus,
    GoalStatus,
    InterSessionMessage,
    Reminder,
    ReminderStatus,
    RestIntent,
    Store,
    utcnow,
)
from tars_actors.telephony.intents import IntentBook, IntentKind, Unsure
from tests.waiting import QUIET, never, wait_until

pytest_plugins = ("tests.pg",)

T = TypeVar("T")

ACCOUNT = "AC" + "1" * 32
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
OWNER = "+15550123456"
DENTIST = "+15555550444"
BUDAPEST = ZoneInfo("Europe/Budapest")
T0 = datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
WAIT = 10.0

Logs = Sequence[MutableMapping[str, Any]]


# -- two daemons on one database ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=WAIT)


def open_store(url: str) -> Store:
    store = Store.open(url)
    store.migrate()
    store.connect()
    return store


@pytest.fixture
def store(make_url: Callable[[], str]) -> Iterator[Store]:
    """This daemon, on SQLite and on PostgreSQL."""
    store = open_store(make_url())
    yield store
    store.shutdown()


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    """This daemon, on PostgreSQL (where other daemons may share the database), serving."""
    store = open_store(postgres_url)
    set_status(store, DaemonStatus.SERVING)
    yield store
    store.shutdown()


def another_daemon(store: Store, status: DaemonStatus = DaemonStatus.SERVING) -> Store:
    """A second daemon on ``store``'s database, registered with ``status``."""
    other = Store(store.database, url=store.url)
    set_status(other, status)
    return other


def set_status(daemon: Store, status: DaemonStatus) -> None:
    now = utcnow()
    Daemon.insert(
        id=daemon.daemon_id,
        host="test",
        pid=1,
        place="",
        status=status,
        started_at=now,
        heartbeat_at=now,
    ).on_conflict(conflict_target=[Daemon.id], update={Daemon.status: status}).execute()


def at_once(*work: tuple[Store, Callable[[], T]]) -> list[T]:
    """Each ``(daemon, call)`` on its own thread and connection, released together; the
    results in order."""
    barrier = threading.Barrier(len(work), timeout=WAIT)

    def run(daemon: Store, call: Callable[[], T]) -> T:
        with daemon.connection():
            barrier.wait()
            return call()

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(work)) as pool:
        futures = [pool.submit(run, daemon, call) for daemon, call in work]
        return [future.result(timeout=WAIT) for future in futures]


@pytest.fixture
def twilio() -> Iterator[TwilioRestStandIn]:
    with TwilioRestStandIn(account_sid=ACCOUNT, auth_token=TOKEN, phone_numbers=[NUMBER]) as rest:
        yield rest


@pytest.fixture
def settings(twilio: TwilioRestStandIn) -> Settings:
    base = Settings(secrets=Secrets(twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN))
    return base.with_overrides(
        {
            "twilio.api_base_url": twilio.base_url,
            "twilio.phone_number": NUMBER,
            "owner.phone": OWNER,
            "owner.timezone": "Europe/Budapest",
            "reminders.delivery": "message",
            "server.public_url": "https://tars.example.test",
        }
    )


def texts(twilio: TwilioRestStandIn) -> list[str]:
    return [r.param("Body") or "" for r in twilio.requests_for(Operation.MESSAGES_CREATE)]


def no_further_text(twilio: TwilioRestStandIn, count: int) -> None:
    never(
        lambda: twilio.wait_for_request(Operation.MESSAGES_CREATE, count=count + 1, timeout=QUIET),
        f"SMS number {count + 1}",
    )


# -- reminders -----------------------------------------------------------------------------------


@pytest.fixture
def timers() -> ManualTimers:
    return ManualTimers(start=T0)


def due_now(store: Store, timers: ManualTimers, count: int) -> list[int]:
    return [book_of(store, timers).create(title=f"R{n}", due_at=T0).id for n in range(count)]


def book_of(store: Store, timers: ManualTimers) -> ReminderBook:
    return ReminderBook(store, BUDAPEST, clock=timers.wall_now)


def claimed(store: Store, title: str, *, by: Store | None, due: datetime) -> int:
    """An occurrence claimed (delivering, sent in another boot) by ``by``, or by no daemon."""
    with store.transaction():
        row = Reminder.create(
            title=title,
            due_at=due,
            status=ReminderStatus.DELIVERING,
            delivery_outcome="sending:earlier-boot",
            claimed_by=None if by is None else by.daemon_id,
            created_at=due,
        )
    return int(row.id)


class Scheduling:
    """A ReminderScheduler (and a Telephony without a store) for one daemon, on a manual clock."""

    def __init__(self, store: Store, settings: Settings, timers: ManualTimers) -> None:
        self.store = store
        self.settings = settings
        self.timers = timers
        self.telephony: pykka.ActorRef[Any] = Telephony.start(
            settings, retry=RetryPolicy(attempts=1, initial_delay=0.01, max_delay=0.01)
        )
        self.scheduler: pykka.ActorRef[Any] | None = None

    def start(self, draining: Callable[[], bool] | None = None) -> pykka.ActorRef[Any]:
        telephony = self.telephony
        self.scheduler = ReminderScheduler.start(
            settings=self.settings,
            store=self.store,
            timers=self.timers,
            switchboard=Switchboard(
                presence=Presence(), ledger=MessageLedger(self.store), router=lambda: None
            ),
            telephony=lambda: telephony,
            me=lambda: self.scheduler,
            boot="this-boot",
            draining=draining,
        )
        self.scheduler.ask(RemindersChanged(), timeout=WAIT)  # on_start is done
        return self.scheduler

    def take_up(self) -> None:
        """What the member actor tells; returns once it was handled."""
        assert self.scheduler is not None
        self.scheduler.ask(TakeUp(reason="member lost"), timeout=WAIT)


def settled(reminder_id: int) -> Any:
    wait_until(
        lambda: Reminder.get_by_id(reminder_id).status != ReminderStatus.DELIVERING,
        "the occurrence settled",
    )
    return Reminder.get_by_id(reminder_id)


def test_due_reminders_are_claimed_for_the_daemon_that_delivers_them(
    store: Store, settings: Settings, twilio: TwilioRestStandIn, timers: ManualTimers
) -> None:
    reminder = book_of(store, timers).create(title="Water the plants", due_at=T0)
    Scheduling(store, settings, timers).start()
    assert twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
    row = settled(reminder.id)
    assert (row.status, row.claimed_by) == (ReminderStatus.DELIVERED, store.daemon_id)


def test_a_claim_in_progress_on_another_daemon_is_skipped_not_waited_for(
    pg_store: Store, timers: ManualTimers
) -> None:
    other = another_daemon(pg_store)
    ids = due_now(pg_store, timers, 3)
    holding, answered = threading.Event(), threading.Event()
    theirs: list[int] = []
    held_until_answered: list[bool] = []

    def other_claims_and_holds() -> None:
        with other.connection(), other.transaction():
            theirs.extend(r.id for r in book_of(other, timers).claim_due())
            holding.set()
            # Its transaction (and the rows' locks) stays open until this daemon has claimed.
            held_until_answered.append(answered.wait(WAIT))

    thread = threading.Thread(target=other_claims_and_holds)
    thread.start()
    try:
        assert holding.wait(WAIT)
        ours = book_of(pg_store, timers).claim_due()
        answered.set()
    finally:
        answered.set()
        thread.join(WAIT)
    assert held_until_answered == [True]  # this daemon's claim did not wait for the locks
    assert (theirs, ours) == (ids, [])
    rows = Reminder.select().order_by(Reminder.id)
    assert [(r.status, r.claimed_by) for r in rows] == [("delivering", other.daemon_id)] * 3


def test_two_daemons_claiming_at_once_claim_disjoint_sets_covering_every_due_reminder(
    pg_store: Store, timers: ManualTimers
) -> None:
    other = another_daemon(pg_store)
    ids = due_now(pg_store, timers, 20)
    mine, theirs = at_once(
        (pg_store, book_of(pg_store, timers).claim_due),
        (other, book_of(other, timers).claim_due),
    )
    assert sorted(r.id for r in [*mine, *theirs]) == ids
    by = {int(r.id): r.claimed_by for r in Reminder.select()}
    assert all(by[r.id] == pg_store.daemon_id for r in mine)
    assert all(by[r.id] == other.daemon_id for r in theirs)


def test_a_reminder_claimed_by_a_live_daemon_is_left_to_it_and_taken_up_once_it_is_lost(
    pg_store: Store, settings: Settings, twilio: TwilioRestStandIn, timers: ManualTimers
) -> None:
    other = another_daemon(pg_store)
    held = claimed(pg_store, "Theirs", by=other, due=T0)
    scheduling = Scheduling(pg_store, settings, timers)
    scheduling.start()
    no_further_text(twilio, 0)
    assert Reminder.get_by_id(held).claimed_by == other.daemon_id

    set_status(other, DaemonStatus.LOST)
    scheduling.take_up()
    twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
    assert texts(twilio) == ["TARS: Reminder: Theirs"]
    row = settled(held)
    assert (row.status, row.claimed_by) == (ReminderStatus.DELIVERED, pg_store.daemon_id)
    no_further_text(twilio, 1)


def test_a_lost_daemons_reminder_taken_up_by_two_daemons_at_once_is_claimed_by_one(
    pg_store: Store, timers: ManualTimers
) -> None:
    lost = another_daemon(pg_store, DaemonStatus.LOST)
    third = another_daemon(pg_store)
    held = claimed(pg_store, "Left behind", by=lost, due=T0)
    legacy = claimed(pg_store, "From before clusters", by=None, due=T0)
    mine, theirs = at_once(
        (pg_store, lambda: book_of(pg_store, timers).claim_unsettled(boot="mine")),
        (third, lambda: book_of(third, timers).claim_unsettled(boot="theirs")),
    )
    assert sorted(r.id for r in [*mine, *theirs]) == [held, legacy]
    assert not {r.id for r in mine} & {r.id for r in theirs}
    # Looked at again, each is its claimer's own (not yet sent), and not the other's.
    again = [book_of(daemon, timers).claim_unsettled(boot="later") for daemon in (pg_store, third)]
    assert [{r.id for r in each} for each in again] == [
        {r.id for r in mine},
        {r.id for r in theirs},
    ]


def test_a_predecessors_unsettled_reminder_is_delivered_at_boot_and_its_own_sent_one_is_not(
    store: Store, settings: Settings, twilio: TwilioRestStandIn, timers: ManualTimers
) -> None:
    predecessor = Store(store.database, url=store.url)  # not live: stopped before this boot
    left = claimed(store, "Half done", by=predecessor, due=T0 - timedelta(minutes=1))
    scheduling = Scheduling(store, settings, timers)
    scheduling.start()
    twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
    assert settled(left).claimed_by == store.daemon_id
    # Handed to Telephony in this boot and not yet settled: a restarted scheduler waits.
    mine = claimed(store, "On its way", by=store, due=T0)
    Reminder.update(delivery_outcome="sending:this-boot").where(Reminder.id == mine).execute()
    assert scheduling.scheduler is not None
    scheduling.scheduler.stop()
    scheduling.start()
    no_further_text(twilio, 1)
    assert Reminder.get_by_id(mine).status == ReminderStatus.DELIVERING


def test_a_draining_scheduler_claims_no_due_reminder_but_settles_its_own(
    store: Store, settings: Settings, twilio: TwilioRestStandIn, timers: ManualTimers
) -> None:
    book = book_of(store, timers)
    due = book.create(title="Due now", due_at=T0 - timedelta(minutes=1))
    later = book.create(title="Due later", due_at=T0 + timedelta(minutes=5))
    mine = claimed(store, "Claimed before draining", by=store, due=T0 - timedelta(minutes=2))
    Scheduling(store, settings, timers).start(draining=lambda: True)
    assert twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
    assert settled(mine).status == ReminderStatus.DELIVERED
    assert timers.pending() == []  # nothing to wake for: the due ones are the others'
    timers.advance(600.0)
    no_further_text(twilio, 1)
    assert [Reminder.get_by_id(r.id).status for r in (due, later)] == ["pending", "pending"]
    [text] = texts(twilio)
    assert text.startswith("TARS: Reminder: Claimed before draining")


def test_take_up_reschedules_for_a_reminder_created_on_another_daemon(
    store: Store, settings: Settings, twilio: TwilioRestStandIn, timers: ManualTimers
) -> None:
    scheduling = Scheduling(store, settings, timers)
    scheduling.start()
    assert timers.pending() == []
    # Written by another daemon's tool: no RemindersChanged reaches this scheduler.
    book_of(store, timers).create(title="From elsewhere", due_at=T0 + timedelta(seconds=30))
    scheduling.take_up()
    assert timers.pending() == [30.0]
    timers.advance(30.0)
    assert twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
    assert texts(twilio) == ["TARS: Reminder: From elsewhere"]


# -- REST intents --------------------------------------------------------------------------------


def claim_sms(book: IntentBook, cid: str, body: str = "Call Anna back") -> Any:
    return book.claim(
        key=f"sms:{cid}",
        kind=IntentKind.SMS,
        to_number=OWNER,
        from_number=NUMBER,
        request={"body": body, "correlation_id": cid},
    )


def start_telephony(settings: Settings, daemon: Store, **options: Any) -> pykka.ActorRef[Any]:
    return Telephony.start(
        settings,
        store=daemon,
        retry=RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.02),
        recheck=RetryPolicy(attempts=1, initial_delay=0.05, max_delay=0.1),
        **options,
    )


def logged(logs: Logs, event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in list(logs) if line["event"] == event]


def test_intents_record_the_daemon_that_attempted_them(store: Store) -> None:
    claim_sms(IntentBook(store), "m1")
    attempted_by = RestIntent.get(RestIntent.key == "sms:m1").attempted_by
    assert attempted_by == store.daemon_id
    [intent] = IntentBook(store).unsure()
    assert intent.ours
    [theirs] = IntentBook(Store(store.database, url=store.url)).unsure()
    assert not theirs.ours


def test_an_sms_a_live_daemon_is_sending_is_left_to_it_and_sent_once_it_is_lost(
    pg_store: Store, settings: Settings, twilio: TwilioRestStandIn
) -> None:
    other = another_daemon(pg_store)
    claim_sms(IntentBook(other), "theirs", body="Sent by the other daemon")
    assert IntentBook(pg_store).unsure() == []
    with capture_logs() as logs:
        telephony = start_telephony(settings, pg_store)
        wait_until(lambda: logged(logs, "telephony.started") != [], "Telephony started")
        [started] = logged(logs, "telephony.started")
        assert started["unsure_intents"] == 0
        set_status(other, DaemonStatus.LOST)
        telephony.ask(TakeUp(reason="member lost", gone=(other.daemon_id,)), timeout=WAIT)
        wait_until(lambda: logged(logs, "telephony.sms_sent") != [], "the SMS sent")
    # Until then it was neither looked up nor sent: the first list is the take-up's.
    assert len(twilio.requests_for(Operation.MESSAGES_LIST)) == 2  # dated, and newest
    assert [line["unsure_intents"] for line in logged(logs, "telephony.taking_up")] == [1]
    assert texts(twilio) == ["Sent by the other daemon"]
    row = RestIntent.get(RestIntent.key == "sms:theirs")
    assert (row.status, row.attempts, row.attempted_by) == ("sent", 2, pg_store.daemon_id)


def test_of_two_daemons_that_find_a_lost_ones_sms_unsent_one_sends_it_the_other_waits(
    pg_store: Store,
) -> None:
    lost = another_daemon(pg_store, DaemonStatus.LOST)
    third = another_daemon(pg_store)
    claim_sms(IntentBook(lost), "left")
    mine, theirs = IntentBook(pg_store), IntentBook(third)
    seen = [claim_sms(book, "left") for book in (mine, theirs)]
    assert all(isinstance(claim, Unsure) for claim in seen)
    # Both looked in Twilio's list and found nothing; the first to send again claims it.
    sending = mine.again(seen[0].intent, {"body": "Call Anna back", "correlation_id": "left"})
    assert sending is not None
    assert sending.ours
    assert theirs.again(seen[1].intent, {"body": "x", "correlation_id": "left"}) is None
    # Asked again, the other daemon finds it on its way from a live daemon: it waits.
    again = claim_sms(theirs, "left")
    assert isinstance(again, Unsure)
    assert again.intent.elsewhere
    assert again.intent.in_transit(utcnow()) > 0


def test_two_daemons_taking_up_a_lost_ones_sms_at_once_send_it_once(
    pg_store: Store, settings: Settings, twilio: TwilioRestStandIn
) -> None:
    lost = another_daemon(pg_store, DaemonStatus.LOST)
    third = another_daemon(pg_store)
    claim_sms(IntentBook(lost), "left", body="Left by a lost daemon")
    # Slow lists: both daemons look the intent up at the same time and find nothing.
    twilio.set_answer_delay(Operation.MESSAGES_LIST, 0.2)
    window = {"in_transit": timedelta(seconds=2)}
    with capture_logs() as logs:
        for daemon in (pg_store, third):
            start_telephony(settings, daemon, **window)
        wait_until(lambda: len(logged(logs, "telephony.started")) == 2, "both started")
        takers = sum(line["unsure_intents"] for line in logged(logs, "telephony.started"))
        assert takers >= 1
        wait_until(
            lambda: len(logged(logs, "telephony.sms_sent")) >= takers,
            "every taker done with the SMS",
            timeout=WAIT,
        )
    assert texts(twilio) == ["Left by a lost daemon"]
    assert RestIntent.get(RestIntent.key == "sms:left").status == "sent"


# -- goals ---------------------------------------------------------------------------------------


def goal(store: Store, status: GoalStatus, *, by: Store | None, summary: str | None = None) -> int:
    with store.transaction():
        row = CallGoal.create(
            contact_name="Dr Smith's office",
            phone=DENTIST,
            objective="Book a check-up next week.",
            status=status,
            outcome="Objective met: Booked Tuesday 10:00",
            summary=summary,
            daemon_id=None if by is None else by.daemon_id,
        )
    return int(row.id)


def no_model() -> Any:
    raise RuntimeError("no text model in this test")


class Desk:
    """A GoalDesk for one daemon, its reports written without the text model."""

    def __init__(self, daemon: Store) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self.desk = GoalDesk(
            settings=Settings(),
            store=daemon,
            switchboard=Switchboard(
                presence=Presence(), ledger=MessageLedger(daemon), router=lambda: None
            ),
            client=no_model,
            pool=self.pool,
        )

    def finish(self) -> None:
        self.pool.shutdown(wait=True)


def goal_reports() -> list[str]:
    query = InterSessionMessage.select().where(
        InterSessionMessage.sender_name.startswith("Goal call")
    )
    return [str(m.body) for m in query]


def test_a_predecessors_goals_are_reported_and_failed_at_boot_each_once(store: Store) -> None:
    predecessor = another_daemon(store, DaemonStatus.LOST)  # as this daemon's boot finds it
    ended = goal(store, GoalStatus.COMPLETED, by=predecessor)
    dialing = goal(store, GoalStatus.DIALING, by=None)
    done = goal(store, GoalStatus.COMPLETED, by=predecessor, summary="Reported before.")
    desk = Desk(store)
    assert desk.desk.take_up() == (1, 1)
    desk.finish()
    assert desk.desk.take_up() == (0, 0)
    assert CallGoal.get_by_id(ended).summary is not None
    failed = CallGoal.get_by_id(dialing)
    assert (failed.status, failed.daemon_id) == (GoalStatus.FAILED, store.daemon_id)
    assert INTERRUPTED in str(failed.summary)
    assert CallGoal.get_by_id(done).summary == "Reported before."
    assert len(goal_reports()) == 2


def test_a_live_daemons_goals_are_left_to_it(pg_store: Store) -> None:
    other = another_daemon(pg_store)
    dialing = goal(pg_store, GoalStatus.DIALING, by=other)
    ending = goal(pg_store, GoalStatus.COMPLETED, by=other)  # its summary being written
    desk = Desk(pg_store)
    assert desk.desk.take_up() == (0, 0)
    desk.finish()
    assert CallGoal.get_by_id(dialing).status == GoalStatus.DIALING
    assert CallGoal.get_by_id(ending).summary is None
    assert goal_reports() == []


def test_a_stopped_daemons_ringing_goal_call_and_a_commands_goal_are_left_to_twilio(
    pg_store: Store,
) -> None:
    stopped = another_daemon(pg_store, DaemonStatus.STOPPED)
    ringing = goal(pg_store, GoalStatus.DIALING, by=stopped)
    long_ago = goal(pg_store, GoalStatus.DIALING, by=stopped)
    never_placed = goal(pg_store, GoalStatus.DIALING, by=stopped)
    by_command = goal(pg_store, GoalStatus.DIALING, by=Store(pg_store.database, url="cli"))
    with pg_store.transaction():
        CallGoal.update(call_sid="CA" + "1" * 32).where(CallGoal.id == ringing).execute()
        CallGoal.update(call_sid="CA" + "2" * 32, created_at=utcnow() - timedelta(minutes=4)).where(
            CallGoal.id == long_ago
        ).execute()
    desk = Desk(pg_store)
    assert desk.desk.take_up() == (0, 2)
    desk.finish()
    statuses = {row.id: row.status for row in CallGoal.select()}
    assert statuses[ringing] == GoalStatus.DIALING  # its answer or final status will come
    assert statuses[by_command] == GoalStatus.DIALING  # ``run.py call``'s, never a member's
    assert statuses[long_ago] == statuses[never_placed] == GoalStatus.FAILED


def test_two_daemons_taking_up_a_lost_ones_goals_at_once_report_each_once(
    pg_store: Store,
) -> None:
    lost = another_daemon(pg_store, DaemonStatus.LOST)
    third = another_daemon(pg_store)
    unreported = [goal(pg_store, GoalStatus.COMPLETED, by=lost) for _ in range(5)]
    interrupted = [goal(pg_store, GoalStatus.IN_PROGRESS, by=lost) for _ in range(5)]
    desks = [Desk(pg_store), Desk(third)]
    results = at_once((pg_store, desks[0].desk.take_up), (third, desks[1].desk.take_up))
    for desk in desks:
        desk.finish()
    assert tuple(map(sum, zip(*results, strict=True))) == (5, 5)
    rows = {int(r.id): r for r in CallGoal.select()}
    assert all(rows[g].summary is not None for g in unreported + interrupted)
    assert all(rows[g].status == GoalStatus.FAILED for g in interrupted)
    assert all(rows[g].daemon_id in (pg_store.daemon_id, third.daemon_id) for g in rows)
    assert len(goal_reports()) == 10  # one report per goal


def test_a_summary_already_saved_is_not_overwritten(store: Store) -> None:
    ended = goal(store, GoalStatus.COMPLETED, by=None, summary="The first report.")
    assert not save_summary(store, ended, "A second report.")
    assert CallGoal.get_by_id(ended).summary == "The first report."
