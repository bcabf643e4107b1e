"""Nothing TARS was told is lost: ``python run.py`` killed with SIGKILL while a message is on
its way delivers it after the restart, exactly once; a Router that crashes mid-delivery
loses nothing."""

from __future__ import annotations

import io

import pykka
import pytest

from actors.router import Router
from actors.telephony import Telephony
from tars_actors.call.caller_words import quote
from tars_actors.messaging.routing import SessionJoined
from tars_actors.sim.gemini import ScriptedReply, tone
from tars_actors.sim.twilio_api import Operation
from tars_actors.sim.world import OWNER_PHONE, LocalWorld
from tars_actors.store import AgentSession, InterSessionMessage, MessageStatus
from tests.logs import log_events
from tests.rig import OWNER, WAIT, Rig, speaking
from tests.waiting import wait_until

STRANGER = "+15555550777"


#: The messages these tests send, as stored: a caller's words, marked so (caller_words).
SURVIVE = quote("Survive a crash.")
CRASH_PROOF = quote("Crash-proof.")


def test_a_message_pending_when_the_daemon_is_killed_is_texted_once_after_restart(
    rig: Rig,
) -> None:
    first, port = rig.daemon()
    try:
        owner = rig.phone(port, OWNER)
        owner.call()
        owner_model = rig.gemini.wait_for_connection(1, timeout=WAIT)
        owner.wait_for_mark("turn-1", timeout=WAIT)
        stranger = rig.phone(port, STRANGER)
        stranger.call()
        stranger_model = rig.gemini.wait_for_connection(2, timeout=WAIT)
        stranger.wait_for_mark("turn-1", timeout=WAIT)
        owner_model.wait_for_client_content(count=2, timeout=WAIT)  # the incoming-call notice
        owner_model.send_turn_complete()  # (its reply: the owner's call is quiet again)
        speaking(owner, owner_model)

        call_id = stranger_model.send_tool_call("take_message", {"message": "Survive a crash."})
        assert stranger_model.wait_for_tool_response(call_id, timeout=WAIT).response["ok"]
        # Handed to the owner's call, which holds it while its model speaks...
        wait_until(
            lambda: any(m.body == SURVIVE and m.attempts == 1 for m in rig.messages()),
            "the message to be handed to the owner's call",
        )
        # ...when the daemon dies without a chance to do anything about it.
        first.kill()
    finally:
        first.kill()
    [held] = [m for m in rig.messages() if m.body == SURVIVE]
    assert held.status == MessageStatus.PENDING
    assert [s.status for s in rig.sessions()] == ["active", "active"]  # as the kill left them
    assert len(owner_model.client_contents) == 2

    second, _ = rig.daemon()
    try:
        sms = rig.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
        assert sms.param("To") == OWNER
        assert sms.param("Body") == (
            "TARS: message from Call with +15555550777: “Survive a crash.”"
        )
        wait_until(
            lambda: (
                [m.status for m in rig.messages() if m.body == SURVIVE] == [MessageStatus.SMS_SENT]
            ),
            "the row to say sent by SMS",
        )
        # The calls the dead daemon was serving are closed, with the reason.
        assert [(s.status, s.end_reason) for s in rig.sessions()] == [
            ("ended", "daemon restart"),
            ("ended", "daemon restart"),
        ]
        assert second.events("store.sessions_closed")[0]["count"] == 2
    finally:
        second.stop()
    third, _ = rig.daemon()
    third.stop()
    # Delivered once: the notice that reached the owner's call is not sent again either.
    assert len(rig.twilio.requests_for(Operation.MESSAGES_CREATE)) == 1
    assert third.process.returncode == 0


def test_a_router_that_crashes_mid_delivery_loses_nothing(
    logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalWorld() as world:
        owner = world.phone(OWNER_PHONE)
        owner.call()
        owner_model = world.gemini.wait_for_connection(1, timeout=WAIT)
        owner.wait_for_mark("turn-1", timeout=WAIT)
        stranger = world.phone(STRANGER)
        stranger.call()
        stranger_model = world.gemini.wait_for_connection(2, timeout=WAIT)
        owner_model.wait_for_client_content(count=2, timeout=WAIT)
        owner_model.reply(ScriptedReply(transcript="A caller.", audio=tone(500.0, 0.2)))
        owner.wait_for_mark("turn-2", timeout=WAIT)
        speaking(owner, owner_model)
        call_id = stranger_model.send_tool_call("take_message", {"message": "Crash-proof."})
        stranger_model.wait_for_tool_response(call_id, timeout=WAIT)
        wait_until(lambda: log_events(logs, "call.note_received") != [], "the note to arrive")

        # The Router fails on its next message; its supervisor starts a fresh one, which
        # finds the note still pending and hands it over again.
        crashed: list[int] = []

        def fail_once(self: Router, session_id: int) -> None:
            crashed.append(session_id)
            raise RuntimeError("router failure injected by the test")

        monkeypatch.setattr(Router, "_joined", fail_once)
        [router] = pykka.ActorRegistry.get_by_class(Router)
        router.tell(SessionJoined(session_id=1))
        wait_until(lambda: log_events(logs, "call.note_repeat_ignored") != [], "the redelivery")
        monkeypatch.undo()
        assert crashed == [1]
        [new_router] = pykka.ActorRegistry.get_by_class(Router)
        assert new_router != router

        owner_model.send_turn_complete()
        note = owner_model.wait_for_client_content(count=3, timeout=WAIT)
        assert "Crash-proof." in note.text
        owner_model.reply(ScriptedReply(transcript="Got it.", audio=tone(500.0, 0.2)))
        owner.wait_for_mark("turn-3", timeout=WAIT)
        assert sum("Crash-proof." in c.text for c in owner_model.client_contents) == 1
        assert world.daemon is not None
        store = world.daemon.store
        assert store is not None
        with store.connection():
            [row] = InterSessionMessage.select().where(InterSessionMessage.body == CRASH_PROOF)
        # The stand-in has the note; the session settles it once the connection reports
        # it sent, which can come a moment later.
        wait_until(
            lambda: any(
                row.id in e["message_ids"] for e in log_events(logs, "call.note_delivered")
            ),
            "the note settled",
        )
        with store.connection():
            assert InterSessionMessage.get_by_id(row.id).status == MessageStatus.DELIVERED
    pykka.ActorRegistry.stop_all()


def test_a_restarted_telephony_actor_still_ends_calls(world: LocalWorld) -> None:
    phone = world.phone(OWNER_PHONE)
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    [old] = pykka.ActorRegistry.get_by_class(Telephony)
    old.stop()  # its supervisor starts a new one
    wait_until(
        lambda: [ref for ref in pykka.ActorRegistry.get_by_class(Telephony) if ref != old] != [],
        "a new Telephony actor",
    )
    call_id = model.send_tool_call("end_call", {})
    model.wait_for_tool_response(call_id, timeout=WAIT)
    model.reply(ScriptedReply(transcript="Goodbye!", audio=tone(500.0, 0.2)))
    hang_up = world.twilio.wait_for_request(Operation.CALLS_UPDATE, timeout=WAIT)
    assert phone.call_sid in hang_up.path

    def ended() -> bool:
        assert world.daemon is not None
        assert world.daemon.store is not None
        with world.daemon.store.connection():
            row = AgentSession.get(AgentSession.call_sid == phone.call_sid)
        return bool(row.status == "ended" and row.end_reason == "end_call")

    wait_until(ended, "the session row to be closed")
