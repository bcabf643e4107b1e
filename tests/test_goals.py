"""Goal calls end to end: the owner's model asks for a call, TARS places it through the REST
stand-in, a softphone answers as the callee, the goal session pursues the objective, and
when the call ends the text-model stand-in's summary reaches the owner."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pykka
import pytest

from tars_actors.sim.gemini import LiveConnection, ScriptedReply, tone
from tars_actors.sim.process import ROOT, write_settings
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.twilio_api import Operation, TwilioRestStandIn
from tars_actors.sim.world import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, OWNER_PHONE, LocalWorld
from tars_actors.store import CallGoal, Contact, RestIntent, Store
from tests.logs import log_events
from tests.waiting import QUIET, never, wait_until

WAIT = 15.0
DENTIST = "+15555550444"


def store_of(world: LocalWorld) -> Store:
    assert world.daemon is not None
    assert world.daemon.store is not None
    return world.daemon.store


def goal_row(world: LocalWorld, goal_id: int) -> Any:
    with store_of(world).connection():
        return CallGoal.get_by_id(goal_id)


def call_tool(model: LiveConnection, name: str, args: dict[str, Any]) -> dict[str, Any]:
    call_id = model.send_tool_call(name, args)
    response: dict[str, Any] = model.wait_for_tool_response(call_id, timeout=WAIT).response
    return response


def owner_on_a_call(world: LocalWorld) -> tuple[SyncSoftphone, LiveConnection]:
    with store_of(world).connection():
        Contact.create(name="Dr Smith's office", phone=DENTIST, relation="dentist")
    owner = world.phone(OWNER_PHONE)
    owner.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    owner.wait_for_mark("turn-1", timeout=WAIT)
    return owner, model


def place_goal_call(world: LocalWorld, owner_model: LiveConnection) -> tuple[int, Any]:
    placed = call_tool(
        owner_model,
        "call_contact",
        {"contact": "dr smith's office", "objective": "Book a check-up next week."},
    )
    assert placed["ok"] is True
    request = world.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
    [record] = world.twilio.calls
    wait_until(lambda: goal_row(world, placed["goal_id"]).call_sid == record.sid, "the call SID")
    return int(placed["goal_id"]), request


def answer(world: LocalWorld, twiml: str) -> tuple[SyncSoftphone, LiveConnection]:
    """The callee picks up: Twilio runs the inline TwiML and opens the stream."""
    [record] = world.twilio.calls
    callee = world.phone(DENTIST, call_sid=record.sid)
    callee.connect(twiml)
    model = world.gemini.wait_for_connection(2, timeout=WAIT)
    callee.wait_for_mark("turn-1", timeout=WAIT)
    return callee, model


def goal_call_answered(world: LocalWorld) -> tuple[int, SyncSoftphone, LiveConnection]:
    """The owner asks for a goal call, and the callee answers it."""
    _owner, owner_model = owner_on_a_call(world)
    goal_id, request = place_goal_call(world, owner_model)
    callee, goal_model = answer(world, request.param("Twiml") or "")
    return goal_id, callee, goal_model


def test_a_goal_call_runs_its_course_and_the_summary_reaches_the_owners_call(
    world: LocalWorld,
) -> None:
    _owner, owner_model = owner_on_a_call(world)
    goal_id, request = place_goal_call(world, owner_model)
    assert request.param("To") == DENTIST
    twiml = request.param("Twiml") or ""
    assert f'<Parameter name="goal_id" value="{goal_id}"' in twiml
    assert "?" not in twiml.split('url="', 1)[1].split('"', 1)[0]  # no query string
    assert request.param("StatusCallbackMethod") == "GET"
    assert (request.param("StatusCallback") or "").endswith("/twilio/status")
    assert request.param("MachineDetection") == "DetectMessageEnd"
    assert request.param("AsyncAmd") == "true"

    callee, goal_model = answer(world, twiml)
    assert "Book a check-up next week." in goal_model.system_instruction
    assert "on behalf of Máté Dort" in goal_model.client_contents[0].text
    assert set(goal_model.function_names) == {
        "end_call",
        "take_message",
        "report_goal_outcome",
        "press_keys",
    }
    assert goal_row(world, goal_id).status == "in_progress"

    goal_model.send_input_transcription("Tuesday at ten works for us.")
    goal_model.reply(ScriptedReply(transcript="Great, Tuesday at ten then.", audio=tone(500, 0.2)))
    callee.wait_for_mark("turn-2", timeout=WAIT)
    reported = call_tool(
        goal_model, "report_goal_outcome", {"outcome": "Booked Tuesday 10:00", "achieved": True}
    )
    assert reported["ok"] is True

    world.gemini.queue_text_reply("The check-up is booked for Tuesday at 10:00. Nothing to do.")
    callee.hang_up()
    callee.send_status("completed")

    summary_request = world.gemini.wait_for_text_request(1, timeout=WAIT)
    assert "Book a check-up next week." in summary_request.text
    assert "Callee: Tuesday at ten works for us." in summary_request.text
    assert "Objective met: Booked Tuesday 10:00" in summary_request.text
    report = owner_model.wait_for_client_content(count=2, timeout=WAIT)
    assert "The check-up is booked for Tuesday at 10:00." in report.text
    assert "Goal call to Dr Smith's office" in report.text
    goal = goal_row(world, goal_id)
    assert goal.status == "completed"
    assert goal.summary == "The check-up is booked for Tuesday at 10:00. Nothing to do."
    assert goal.ended_at is not None
    assert goal.parent_session_id is not None
    assert goal.session_id is not None


@pytest.mark.parametrize(
    ("twilio_status", "goal_status"), [("no-answer", "no_answer"), ("busy", "busy")]
)
def test_an_unanswered_goal_call_is_reported_by_sms_when_the_owner_is_away(
    world: LocalWorld, twilio_status: str, goal_status: str
) -> None:
    owner, owner_model = owner_on_a_call(world)
    goal_id, _request = place_goal_call(world, owner_model)
    owner.hang_up()
    [record] = world.twilio.calls
    world.gemini.queue_text_reply("Nobody picked up at Dr Smith's office; try again later.")
    callee = world.phone(DENTIST, call_sid=record.sid)
    callee.send_status(twilio_status)

    sms = world.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
    assert sms.param("To") == OWNER_PHONE
    assert "Nobody picked up at Dr Smith's office" in (sms.param("Body") or "")
    wait_until(lambda: goal_row(world, goal_id).status == goal_status, "the goal's status")
    summary_request = world.gemini.wait_for_text_request(1, timeout=WAIT)
    words = {"no_answer": "nobody answered", "busy": "the line was busy"}[goal_status]
    assert f"How it went: {words}" in summary_request.text


def test_when_the_text_model_fails_the_report_still_goes_out_with_the_last_lines(
    world: LocalWorld, logs: io.StringIO
) -> None:
    _owner, owner_model = owner_on_a_call(world)
    goal_id, request = place_goal_call(world, owner_model)
    callee, goal_model = answer(world, request.param("Twiml") or "")
    goal_model.send_input_transcription("She is out until Monday.")
    goal_model.reply(ScriptedReply(transcript="I will call back Monday.", audio=tone(500, 0.2)))
    callee.wait_for_mark("turn-2", timeout=WAIT)
    call_tool(
        goal_model,
        "report_goal_outcome",
        {"outcome": "Office closed until Monday", "achieved": False},
    )
    world.gemini.queue_text_error(429)
    callee.hang_up()

    report = owner_model.wait_for_client_content(count=2, timeout=WAIT)
    assert "Objective not met: Office closed until Monday" in report.text
    assert "Callee: She is out until Monday." in report.text
    [failure] = log_events(logs, "goal.summary_failed")
    assert failure["goal_id"] == goal_id
    assert "429" in failure["error"]


def test_a_goal_call_answered_by_a_machine_leaves_a_message_and_ends_as_voicemail(
    world: LocalWorld,
) -> None:
    _owner, owner_model = owner_on_a_call(world)
    goal_id, request = place_goal_call(world, owner_model)
    callee, goal_model = answer(world, request.param("Twiml") or "")
    callee.send_status("in-progress", extra_params={"AnsweredBy": "machine_end_beep"})
    instruction = goal_model.wait_for_client_content(count=2, timeout=WAIT)
    assert "reached voicemail" in instruction.text
    assert "Dr Smith's office" in instruction.text
    callee.hang_up()
    wait_until(lambda: goal_row(world, goal_id).status == "voicemail", "the voicemail status")
    # The summary is asked for a voicemail, and that summary is what the owner hears.
    summary_request = world.gemini.wait_for_text_request(1, timeout=WAIT)
    assert "How it went: it went to voicemail and a message was left" in summary_request.text
    report = owner_model.wait_for_client_content(count=2, timeout=WAIT)
    assert "Goal call to Dr Smith's office" in report.text
    assert goal_row(world, goal_id).summary in report.text


def test_calling_someone_unknown_is_refused_with_the_contacts_listed(world: LocalWorld) -> None:
    _owner, owner_model = owner_on_a_call(world)
    refused = call_tool(owner_model, "call_contact", {"contact": "Bob", "objective": "Say hello."})
    assert refused["error"] == (
        '"Bob" is neither a contact nor a +E.164 number; contacts: "Dr Smith\'s office"'
    )
    assert world.twilio.requests_for(Operation.CALLS_CREATE) == []
    with store_of(world).connection():
        assert CallGoal.select().count() == 0


def test_python_run_py_call_places_a_goal_call_and_prints_its_id(tmp_path: Path) -> None:
    with TwilioRestStandIn(auth_token=FAKE_AUTH_TOKEN, account_sid=FAKE_ACCOUNT_SID) as twilio:
        settings = write_settings(
            tmp_path,
            twilio_base_url=twilio.base_url,
            gemini_base_url="https://127.0.0.1:9",
            gemini_ca_file="",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TARS_", "TWILIO_"))}
        env.update(TWILIO_ACCOUNT_SID=FAKE_ACCOUNT_SID, TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN)
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "run.py"),
                "--settings",
                str(settings),
                "call",
                DENTIST,
                "--goal",
                "Ask whether the results are in.",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        [record] = twilio.calls
        assert done.stdout.startswith(f"goal 1: calling {DENTIST} ({DENTIST}), call {record.sid}")
        [request] = twilio.requests_for(Operation.CALLS_CREATE)
        assert '<Parameter name="goal_id" value="1"' in (request.param("Twiml") or "")
        assert request.param("StatusCallbackMethod") == "GET"
        store = Store.open(f"sqlite:///{tmp_path / 'tars.db'}")
        with store.connection():
            goal = CallGoal.get_by_id(1)
            assert (goal.status, goal.call_sid) == ("dialing", record.sid)
            assert goal.objective == "Ask whether the results are in."
            # Written before the request, settled after, like the daemon's own calls.
            [intent] = RestIntent.select()
            assert (intent.key, intent.status, intent.sid) == ("call:goal-1", "sent", record.sid)
        store.shutdown()


def test_a_goal_that_ended_without_its_report_is_reported_once_after_a_restart(
    tmp_path: Path,
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'tars.db'}")
    store.migrate()
    with store.connection():
        CallGoal.create(
            contact_name="Dr Smith's office",
            phone=DENTIST,
            objective="Book a check-up next week.",
            status="completed",
            outcome="Objective met: Booked Tuesday 10:00",
        )
    store.shutdown()
    for boot in (1, 2):
        with LocalWorld(directory=tmp_path) as world:
            if boot == 1:
                sms = world.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
                assert "Goal call to Dr Smith's office" in (sms.param("Body") or "")
                wait_until(lambda: goal_row(world, 1).summary is not None, "the summary")
            else:
                never(
                    lambda: world.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=QUIET),
                    "a second report",
                )
        pykka.ActorRegistry.stop_all()
