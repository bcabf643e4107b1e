"""`python run.py demo`: the whole product on 127.0.0.1, with no account or credential.

The real server and actor system run with a temporary database; the Gemini Live and Twilio
REST stand-ins play the cloud (the stand-in model follows a script: it speaks, calls tools
and answers as a real model would), and softphones play the people, speaking Twilio's exact
Media Streams protocol. The scripted story:

1. the owner calls in and is greeted;
2. an unknown caller rings, the owner is told, and the caller's message reaches the owner's
   live call;
3. a reminder the owner sets comes due during the call and is announced;
4. a goal call to the dentist runs, and its report reaches the owner.

It prints a timeline (time, session, who said what, what each actor did) and where the
database and the log are.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from tars_actors.call.caller_words import unmarked
from tars_actors.runtime.log import configure_logging, reset_logging
from tars_actors.runtime.supervision import SupervisorEvent
from tars_actors.sim.gemini import LiveBehaviour, LiveConnection, ScriptedReply, tone
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.twilio_api import Operation
from tars_actors.sim.world import OWNER_PHONE, LocalWorld
from tars_actors.store import AgentSession, Contact, Conversation, InterSessionMessage, Store

__all__ = ["main", "run_demo"]

WAIT = 15.0
STRANGER = "+15555550777"
DENTIST = "+15555550444"

#: Log events worth a line in the timeline, and how to say them.
_TIMELINE_EVENTS = {
    "daemon.started": "TARS is up on port {port}",
    "call.started": "call from {caller} ({permission})",
    "model.connected": "model connection {connection_id} ready",
    "tool.called": "the model called {tool}",
    "router.handed_to_call": "message {message_id} handed to the call",
    "call.note_delivered": "note(s) {message_ids} passed to the model at a turn boundary",
    "reminders.due": "reminder {reminder_id} is due",
    "reminders.delivered": "reminder {reminder_id} delivered ({how})",
    "goal.created": "goal {goal_id} recorded: call {callee}",
    "telephony.call_placed": "call {call_sid} placed to {to}",
    "goal.ended": "goal {goal_id} ended: {status}",
    "goal.reported": "goal {goal_id}: the summary is routed to the owner",
    "call.summary": "call ended ({reason}), {turns} model turn(s), {duration_seconds:.1f} s",
}


@dataclass(frozen=True, slots=True)
class _Entry:
    at: float
    who: str
    text: str


def run_demo(directory: Path, out: TextIO) -> int:
    log_path = directory / "tars.log"
    with log_path.open("w", encoding="utf-8") as log_stream:
        configure_logging(level="info", format="json", stream=log_stream)
        try:
            # The stand-in model answers nothing on its own: the story scripts every turn.
            behaviour = LiveBehaviour(turn_reply=None)
            with LocalWorld(directory=directory, behaviour=behaviour) as world:
                _story(world)
                store = _store(world)
                database = world.settings.database.url if world.settings else ""
                said = [*_spoken(store), *_routed(store)]
        finally:
            reset_logging()
    entries = sorted([*_logged(log_path), *said], key=lambda entry: entry.at)
    _print_timeline(out, entries)
    print(f"\nDatabase: {database}", file=out)
    print(f"Log (JSON lines): {log_path}", file=out)
    print(f"See it as the operator would: python run.py inspect {log_path}", file=out)
    return 0


def _story(world: LocalWorld) -> None:
    store = _store(world)
    with store.connection():
        Contact.create(name="Dr Smith's office", phone=DENTIST, relation="dentist")
    owner, owner_model = _owner_calls_in(world)
    _a_stranger_leaves_a_message(world, owner, owner_model)
    _a_reminder_comes_due(owner, owner_model)
    _a_goal_call_reports_back(world, owner, owner_model)
    owner_ended = _ended(world, owner.call_sid)
    owner.hang_up()
    owner_ended.wait_for(lambda e: True, timeout=WAIT)


def _owner_calls_in(world: LocalWorld) -> tuple[SyncSoftphone, LiveConnection]:
    """1. The owner calls in and is greeted."""
    owner = world.phone(OWNER_PHONE)
    owner.call()
    owner_model = world.gemini.wait_for_connection(1, timeout=WAIT)
    owner_model.wait_for_client_content(count=1, timeout=WAIT)
    _say(owner, owner_model, "Hi Máté, TARS here. What can I do for you?", "turn-1")
    owner_model.send_input_transcription("What is on today?")
    _say(owner, owner_model, "Nothing urgent; your afternoon is free.", "turn-2")
    return owner, owner_model


def _a_stranger_leaves_a_message(
    world: LocalWorld, owner: SyncSoftphone, owner_model: LiveConnection
) -> None:
    """2. An unknown caller rings: the owner is told, and the caller's message reaches the
    owner's live call at its next turn boundary."""
    stranger = world.phone(STRANGER)
    stranger.call()
    stranger_model = world.gemini.wait_for_connection(2, timeout=WAIT)
    stranger_model.wait_for_client_content(count=1, timeout=WAIT)
    _say(
        stranger,
        stranger_model,
        "Hey, this is Máté Dort's assistant TARS, how can I help you?",
        "turn-1",
    )
    owner_model.wait_for_client_content(count=2, timeout=WAIT)
    _say(owner, owner_model, "Someone is calling your number right now.", "turn-3")
    stranger_model.send_input_transcription("Hi, it's Anna. Tell him the parcel has arrived.")
    _say(stranger, stranger_model, "I will pass that on to Máté. Goodbye!", "turn-2")
    message = {"message": "The parcel has arrived.", "caller_name": "Anna"}
    _tool(stranger_model, "take_message", message)
    owner_model.wait_for_client_content(count=3, timeout=WAIT)
    _say(owner, owner_model, "Anna says your parcel has arrived.", "turn-4")
    stranger_ended = _ended(world, stranger.call_sid)
    stranger.hang_up()
    stranger_ended.wait_for(lambda e: True, timeout=WAIT)


def _a_reminder_comes_due(owner: SyncSoftphone, owner_model: LiveConnection) -> None:
    """3. A reminder the owner sets comes due during the call and is announced in it."""
    owner_model.send_input_transcription("Remind me to stretch my legs in two seconds.")
    _tool(owner_model, "create_reminder", {"title": "Stretch your legs", "due": "in 2 seconds"})
    _say(owner, owner_model, "Done, I will remind you.", "turn-5")
    owner_model.wait_for_client_content(count=4, timeout=WAIT)
    _say(owner, owner_model, "Reminder: time to stretch your legs.", "turn-6")


def _a_goal_call_reports_back(
    world: LocalWorld, owner: SyncSoftphone, owner_model: LiveConnection
) -> None:
    """4. TARS phones the dentist for the owner; the report reaches the owner's call."""
    owner_model.send_input_transcription("Call my dentist and book a check-up next week.")
    goal = {"contact": "Dr Smith's office", "objective": "Book a check-up next week."}
    _tool(owner_model, "call_contact", goal)
    _say(owner, owner_model, "I am calling them now.", "turn-7")
    request = world.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
    [record] = world.twilio.calls
    dentist = world.phone(DENTIST, call_sid=record.sid)
    dentist.connect(request.param("Twiml") or "")
    goal_model = world.gemini.wait_for_connection(3, timeout=WAIT)
    goal_model.wait_for_client_content(count=1, timeout=WAIT)
    goal_model.send_input_transcription("Dr Smith's office, how can I help?")
    _say(
        dentist,
        goal_model,
        "Hello, this is TARS for Máté Dort: could he have a check-up next week?",
        "turn-1",
    )
    goal_model.send_input_transcription("Tuesday at ten works.")
    _say(dentist, goal_model, "Tuesday at ten is perfect, thank you. Goodbye!", "turn-2")
    outcome = {"outcome": "Booked Tuesday 10:00", "achieved": True}
    _tool(goal_model, "report_goal_outcome", outcome)
    world.gemini.queue_text_reply(
        "The check-up with Dr Smith is booked for Tuesday at 10:00; nothing else to do."
    )
    dentist_ended = _ended(world, dentist.call_sid)
    dentist.hang_up()
    dentist_ended.wait_for(lambda e: True, timeout=WAIT)
    owner_model.wait_for_client_content(count=5, timeout=WAIT)
    _say(owner, owner_model, "Your check-up is booked for Tuesday at ten.", "turn-8")


def _store(world: LocalWorld) -> Store:
    assert world.daemon is not None
    assert world.daemon.store is not None
    return world.daemon.store


def _say(phone: SyncSoftphone, model: LiveConnection, text: str, mark: str) -> None:
    """The stand-in model says ``text`` (a short tone stands for the voice) and the caller
    hears it to the end."""
    model.reply(ScriptedReply(transcript=text, audio=tone(440.0, 0.3)))
    phone.wait_for_mark(mark, timeout=WAIT)


def _tool(model: LiveConnection, name: str, args: dict[str, Any]) -> None:
    call_id = model.send_tool_call(name, args)
    model.wait_for_tool_response(call_id, timeout=WAIT)


def _ended(world: LocalWorld, call_sid: str) -> Any:
    assert world.daemon is not None
    return world.daemon.events.subscribe(
        lambda e: (
            isinstance(e, SupervisorEvent)
            and e.event == "supervisor.child_exited"
            and e.child_id == call_sid
        )
    )


def _spoken(store: Store) -> Iterator[_Entry]:
    with store.connection():
        for session in AgentSession.select().order_by(AgentSession.id):
            lines = (
                Conversation.select()
                .where(Conversation.session == session)
                .order_by(Conversation.seq)
            )
            for line in lines:
                who = "caller" if line.speaker == "caller" else "TARS"
                cut = "" if line.heard else " (cut off)"
                yield _Entry(
                    at=line.spoken_at.timestamp(),
                    who=str(session.name),
                    text=f'{who}: "{line.text}"{cut}',
                )


def _routed(store: Store) -> Iterator[_Entry]:
    """Each routed message as the Router recorded it, with its final outcome."""
    with store.connection():
        for row in InterSessionMessage.select().order_by(InterSessionMessage.id):
            to = "the owner" if row.target == "user" else row.target
            yield _Entry(
                at=row.created_at.timestamp(),
                who="Router",
                text=f"message {row.id} from {row.sender_name} to {to}: "
                f'"{unmarked(row.body)}" ({row.status})',
            )


def _logged(log_path: Path) -> Iterator[_Entry]:
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event = record.get("event", "")
        template = _TIMELINE_EVENTS.get(event)
        if template is None or (
            # Both ends of a model connection log it; the session's line says enough.
            event == "model.connected" and record.get("actor") != "CallSession"
        ):
            continue
        try:
            text = template.format(**record)
        except (KeyError, ValueError):
            text = event
        yield _Entry(
            at=_seconds(record.get("timestamp", "")),
            who=str(record.get("session") or record.get("actor") or "TARS"),
            text=text,
        )


def _print_timeline(out: TextIO, entries: Sequence[_Entry]) -> None:
    print("Timeline:", file=out)
    first = entries[0].at if entries else 0.0
    for entry in entries:
        print(f"  [{entry.at - first:6.2f}s] {entry.who}: {entry.text}", file=out)


def _seconds(timestamp: str) -> float:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def main(argv: Sequence[str], *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    keep = Path(tempfile.mkdtemp(prefix="tars-demo-"))
    return run_demo(keep, out)
