"""Several daemons on one PostgreSQL database, each ``python run.py`` in its own process:
they see each other's calls, a note crosses from one to the other once, a stream may open on
a daemon other than the one that answered its webhook, a killed daemon's calls are closed and
its note carried by another, a reminder due fires once, and a daemon that drains sends new
calls elsewhere."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tars_actors.sim.gemini import tone
from tars_actors.sim.twilio_api import Operation
from tars_actors.store import (
    Daemon,
    MessageStatus,
    Reminder,
    Store,
    utcnow,
)
from tests.rig import OWNER, WAIT, Rig, notes_saying
from tests.waiting import never, wait_until

pytest_plugins = ("tests.pg",)

STRANGER = "+15555550777"
#: The shortest lease: a heartbeat a second.
LEASE = 3


@pytest.fixture
def rig(tmp_path: Path, postgres_url: str) -> Iterator[Rig]:
    extra: dict[str, dict[str, int | str]] = {
        "cluster": {"lease_seconds": LEASE},
        "reminders": {"delivery": "message"},
    }
    with Rig(tmp_path, extra, database_url=postgres_url) as rig:
        yield rig


def test_a_note_from_a_caller_on_one_daemon_reaches_the_owner_on_another_once(rig: Rig) -> None:
    a, port_a, a_id = rig.member()
    b, port_b, b_id = rig.member()
    try:
        calls = rig.owner_and_caller(port_a, port_b, STRANGER)
        owner, owner_model = calls.owner, calls.owner_model
        stranger, stranger_model = calls.caller, calls.caller_model
        # The stranger's call on B is announced in the owner's call on A.
        notice = owner_model.client_contents[1]
        assert "Incoming call from Call with +15555550777" in str(notice)
        owner_model.send_turn_complete()

        # The owner sees both calls, whichever daemon runs them.
        listed = owner_model.send_tool_call("list_active_sessions", {})
        sessions = owner_model.wait_for_tool_response(listed, timeout=WAIT).response["sessions"]
        assert sorted(s["caller"] for s in sessions) == sorted([OWNER, STRANGER])
        assert [s["this_call"] for s in sessions if s["caller"] == OWNER] == [True]

        taken = stranger_model.send_tool_call("take_message", {"message": "Across daemons."})
        assert stranger_model.wait_for_tool_response(taken, timeout=WAIT).response["ok"]
        note = owner_model.wait_for_client_content(count=3, timeout=WAIT)
        assert "Across daemons." in str(note)
        wait_until(
            lambda: (
                [(m.status, m.held_by) for m in rig.messages() if "Across" in m.body]
                == [(MessageStatus.DELIVERED, a_id)]
            ),
            "the note to be recorded delivered, by A",
        )
        assert b.events("router.handed_to_member")[-1]["daemon"] == a_id
        rig.heartbeats(2)
        assert notes_saying(owner_model, "Across daemons.") == 1
        assert rig.twilio.requests_for(Operation.MESSAGES_CREATE) == []
        assert {s.daemon_id for s in rig.sessions()} == {a_id, b_id}
        owner.hang_up()
        stranger.hang_up()
        wait_until(
            lambda: [s.status for s in rig.sessions()] == ["ended", "ended"],
            "both calls to end",
        )
    finally:
        a.stop()
        b.stop()
    assert not a.errors
    assert not b.errors
    assert [d.status for d in rig.rows(Daemon, Daemon.started_at)] == ["stopped", "stopped"]


def test_a_daemon_killed_while_a_note_waits_is_taken_over_and_the_note_sent_once(
    rig: Rig,
) -> None:
    a, port_a, a_id = rig.member()
    b, port_b, b_id = rig.member()
    try:
        calls = rig.note_held(port_a, port_b, STRANGER, "Survive a kill.", a_id)
        stranger, stranger_model = calls.caller, calls.caller_model
        a.kill()

        lost = b.wait_for_event("cluster.daemon_lost", timeout=WAIT)
        assert (lost["daemon"], lost["sessions_closed"]) == (a_id, 1)
        sms = rig.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
        assert sms.param("To") == OWNER
        assert "Survive a kill." in sms.param("Body")
        wait_until(
            lambda: (
                [m.status for m in rig.messages() if "Survive" in m.body]
                == [MessageStatus.SMS_SENT]
            ),
            "the note to be recorded sent by SMS",
        )
        by_daemon = {s.daemon_id: (s.status, s.end_reason) for s in rig.sessions()}
        assert by_daemon[a_id][1] in ("daemon lost", "daemon restart")
        assert by_daemon[a_id][0] == "ended"
        assert by_daemon[b_id] == ("active", None)  # the stranger's call goes on
        heard = len(stranger.received_audio)
        stranger_model.send_audio(tone(300.0, 0.2))
        stranger.wait_for_audio(heard + 800, timeout=WAIT)
        stranger.hang_up()
        wait_until(
            lambda: {s.daemon_id: s.status for s in rig.sessions()}[b_id] == "ended",
            "the stranger's call to end",
        )
    finally:
        a.kill()
        b.stop()
    c, _, _ = rig.member()
    c.stop()
    assert len(rig.twilio.requests_for(Operation.MESSAGES_CREATE)) == 1
    statuses = {d.id: d.status for d in rig.rows(Daemon)}
    assert statuses[a_id] == "lost"
    assert statuses[b_id] == "stopped"


def test_a_stream_opens_on_a_daemon_other_than_the_one_that_answered_its_webhook(
    rig: Rig,
) -> None:
    a, port_a, a_id = rig.member()
    b, port_b, b_id = rig.member()
    try:
        stranger = rig.phone(port_a, STRANGER)
        twiml = stranger.dial()  # A answers and starts the call's session early
        # The call's own stream path: a balancer hashing the CallSid sends it where the
        # webhook went; this one did not.
        assert twiml.stream is not None
        assert twiml.stream.url.endswith(f"/twilio/media/{stranger.call_sid}")
        rig.gemini.wait_for_connection(1, timeout=WAIT)
        stranger.phone.server_url = f"http://127.0.0.1:{port_b}"  # the balancer picks B
        stranger.connect(twiml)
        rig.gemini.wait_for_connection(2, timeout=WAIT)
        stranger.wait_for_mark("turn-1", timeout=WAIT)  # greeted by B's session

        gave_up = a.wait_for_event("call.stream_never_opened", timeout=WAIT)
        assert gave_up["reason"] == "its stream opened on another daemon"
        wait_until(
            lambda: (
                sorted((s.daemon_id, s.status) for s in rig.sessions())
                == sorted([(a_id, "ended"), (b_id, "active")])
            ),
            "A's early session to end and B's to run the call",
        )
        # A's early model connection is closed: only B's holds a Live session.
        wait_until(
            lambda: [c.closed for c in rig.gemini.connections] == [True, False],
            "A's model connection to close",
        )
        stranger.hang_up()
    finally:
        a.stop()
        b.stop()
    assert not a.errors
    assert not b.errors


def test_a_reminder_due_with_two_daemons_up_is_delivered_once(rig: Rig) -> None:
    rig.rewrite_settings({**rig.extra, "logging": {"level": "debug"}})
    store = Store.open(rig.database_url)
    store.migrate()
    due = utcnow() + timedelta(seconds=8)
    with store.connection():
        Reminder.create(title="Water the plants", due_at=due)
    store.shutdown()
    a, _, a_id = rig.member()
    b, _, b_id = rig.member()
    try:
        # Both set a timer for it: both fire at the due time, and one of them claims it.
        for member in (a, b):
            scheduled = member.wait_for_event("reminders.scheduled", timeout=WAIT)
            assert scheduled["due_at"] == due.isoformat()
        sms = rig.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
        assert "Water the plants" in sms.param("Body")
        wait_until(
            lambda: [r.status for r in rig.rows(Reminder)] == ["delivered"],
            "the reminder to be recorded delivered",
        )
        [reminder] = rig.rows(Reminder)
        assert reminder.claimed_by in (a_id, b_id)
        never(
            lambda: rig.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=2, count=2),
            "a second SMS",
        )
        assert len(a.events("reminders.due")) + len(b.events("reminders.due")) == 1
    finally:
        a.stop()
        b.stop()


def test_a_draining_daemon_refuses_new_calls_so_the_balancer_sends_them_to_another(
    rig: Rig,
) -> None:
    rig.rewrite_settings({**rig.extra, "sessions": {"shutdown_grace_seconds": 30}})
    a, port_a, a_id = rig.member()
    b, port_b, _ = rig.member()
    try:
        caller = rig.phone(port_a, STRANGER)
        rig.greeted(caller, 1)
        a.process.terminate()  # SIGTERM: A drains while its call goes on
        a.wait_for_event("daemon.draining", timeout=WAIT)
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(f"http://127.0.0.1:{port_a}/healthz", timeout=WAIT)
        assert health.value.code == 503
        late = rig.phone(port_a, "+15555550888")
        reply = late.get_signed(
            "https://tars.example.test/twilio/voice",
            {"CallSid": late.call_sid, "From": "+15555550888", "To": "+15555550100"},
        )
        assert reply.status == 503  # the balancer hands it to another member
        assert [d.status for d in rig.rows(Daemon) if d.id == a_id] == ["draining"]
        other = rig.phone(port_b, "+15555550888")
        rig.greeted(other, 2)
        caller.hang_up()
        assert a.process.wait(timeout=WAIT) == 0
    finally:
        a.stop()
        b.stop()
    assert [d.status for d in rig.rows(Daemon) if d.id == a_id] == ["stopped"]


def test_a_status_callback_reaching_another_daemon_goes_to_the_one_that_placed_the_call(
    rig: Rig,
) -> None:
    rig.rewrite_settings({**rig.extra, "reminders": {"delivery": "call"}})
    store = Store.open(rig.database_url)
    store.migrate()
    with store.connection():
        Reminder.create(title="Feed the cat", due_at=utcnow() - timedelta(seconds=1))
    store.shutdown()
    a, port_a, a_id = rig.member()
    b, port_b, _ = rig.member()
    try:
        rig.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
        [placed] = rig.twilio.calls
        wait_until(
            lambda: [r.delivery_outcome for r in rig.rows(Reminder)] == ["called"], "the call"
        )
        [reminder] = rig.rows(Reminder)
        placer, other = (a, port_b) if reminder.claimed_by == a_id else (b, port_a)
        # Twilio's "nobody answered" reaches the member that did not place the call...
        phone = rig.phone(other, OWNER, call_sid=placed.sid)
        assert phone.send_status("no-answer").status == 204
        # ...and the one that did sends the reminder by SMS, once.
        sms = rig.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
        assert sms.param("Body") == "TARS: Reminder: Feed the cat (I called, but nobody answered.)"
        forwarded = (b if placer is a else a).wait_for_event("calls.status_forwarded", WAIT)
        assert (forwarded["call_sid"], forwarded["daemon"]) == (placed.sid, reminder.claimed_by)
        wait_until(
            lambda: (
                [r.delivery_outcome for r in rig.rows(Reminder)] == ["texted_after_unanswered_call"]
            ),
            "the outcome to say so",
        )
        never(
            lambda: rig.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=2, count=2),
            "a second SMS",
        )
    finally:
        a.stop()
        b.stop()
    assert not a.errors
    assert not b.errors


def test_a_paused_daemon_is_taken_over_after_its_lease_and_hangs_up_when_it_resumes(
    rig: Rig,
) -> None:
    a, port_a, a_id = rig.member()
    b, port_b, _ = rig.member()
    try:
        calls = rig.note_held(port_a, port_b, STRANGER, "While you slept.", a_id)
        owner, owner_model, stranger = calls.owner, calls.owner_model, calls.caller
        a.process.send_signal(signal.SIGSTOP)  # alive, and silent: only the lease tells
        try:
            lost = b.wait_for_event("cluster.daemon_lost", timeout=WAIT)
            assert (lost["daemon"], lost["why"], lost["sessions_closed"]) == (a_id, "lease", 1)
            assert lost["silent_seconds"] > LEASE
            sms = rig.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
            assert "While you slept." in sms.param("Body")
        finally:
            a.process.send_signal(signal.SIGCONT)
        # A finds it was taken for lost: it says so, and hangs up its call with a notice
        # instead of saying the note that was texted meanwhile.
        found = a.wait_for_event("cluster.found_lost", timeout=WAIT)
        assert found["daemon"] == a_id
        a.wait_for_event("calls.ending_all", timeout=WAIT)
        owner.wait_closed(timeout=WAIT)
        assert notes_saying(owner_model, "While you slept.") == 0
        stranger.hang_up()
    finally:
        a.stop()
        b.stop()
    assert len(rig.twilio.requests_for(Operation.MESSAGES_CREATE)) == 1


def test_a_stopping_daemon_leaves_the_reminders_to_come_to_the_others(rig: Rig) -> None:
    a, _, a_id = rig.member()
    b, _, b_id = rig.member()
    try:
        # Written after both started (as another member's tool would): neither knows yet.
        store = Store.open(rig.database_url)
        with store.connection():
            Reminder.create(title="Call the bank", due_at=utcnow() + timedelta(seconds=3))
        store.shutdown()
        a.stop()
        assert a.process.returncode == 0
        took = b.wait_for_event("cluster.took_up", timeout=WAIT)
        assert (took["reason"], took["gone"]) == ("member left", [a_id])
        sms = rig.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
        assert "Call the bank" in sms.param("Body")
        wait_until(
            lambda: [(r.status, r.claimed_by) for r in rig.rows(Reminder)] == [("delivered", b_id)],
            "the reminder to be delivered by B",
        )
    finally:
        a.stop()
        b.stop()
    assert [d.status for d in rig.rows(Daemon, Daemon.started_at)] == ["stopped", "stopped"]
