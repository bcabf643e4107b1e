"""Call screening and transfer end to end, through the real daemon and actors: a caller asks
to speak to the owner (``request_transfer``), the owner is asked in their live call or by a
screening call to their phone, decides (``decide_transfer``, or the keypad), and the two legs
are redirected into one ``<Conference>`` at the REST stand-in; and ``connect_call``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.router import Router
from tars_actors.sim.gemini import LiveConnection
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.twilio_api import CallRecord, Operation, RedirectRecord
from tars_actors.sim.world import OWNER_PHONE, TWILIO_NUMBER, LocalWorld
from tars_actors.store import AgentSession, Contact, Store, Transfer
from tars_actors.transfer.messages import BRIDGED_CALL_LIMIT, DIAL_SECONDS
from tests.waiting import wait_until

WAIT = 15.0
ANNA = "+15555550123"
STRANGER = "+15555550177"
RING_SECONDS = 5


class Line:
    """The world, with each softphone known to Twilio's stand-in as a live call, and the
    stream of a redirected call ended as Twilio ends it (``stop``)."""

    def __init__(self, world: LocalWorld) -> None:
        self.world = world
        self._phones: dict[str, SyncSoftphone] = {}
        self._lock = threading.Lock()
        world.twilio.on_call_redirected(self._redirected)

    def _redirected(self, call: CallRecord, _redirect: RedirectRecord) -> None:
        with self._lock:
            phone = self._phones.get(call.sid)
        if phone is not None:
            phone.hang_up()

    def dial_in(self, number: str) -> tuple[SyncSoftphone, LiveConnection]:
        """A call to TARS from ``number``, answered; its model connection."""
        phone = self.world.phone(number)
        self.world.twilio.seed_call(phone.call_sid, from_=number, to=TWILIO_NUMBER)
        with self._lock:
            self._phones[phone.call_sid] = phone
        count = len(self.world.gemini.connections) + 1
        phone.call()
        model = self.world.gemini.wait_for_connection(count, timeout=WAIT)
        phone.wait_for_mark("turn-1", timeout=WAIT)
        return phone, model

    def answer(self, call: CallRecord) -> tuple[SyncSoftphone, LiveConnection]:
        """The owner picks up the screening call TARS placed."""
        self.world.twilio.set_call_status(call.sid, "in-progress")
        phone = self.world.phone(OWNER_PHONE, call_sid=call.sid, direction="outbound-api")
        with self._lock:
            self._phones[call.sid] = phone
        count = len(self.world.gemini.connections) + 1
        phone.connect(call.twiml or "")
        model = self.world.gemini.wait_for_connection(count, timeout=WAIT)
        phone.wait_for_mark("turn-1", timeout=WAIT)
        return phone, model

    def store(self) -> Store:
        assert self.world.daemon is not None
        assert self.world.daemon.store is not None
        return self.world.daemon.store

    def transfer(self, transfer_id: int) -> Any:
        with self.store().connection():
            return Transfer.get_by_id(transfer_id)

    def session_of(self, call_sid: str) -> Any:
        with self.store().connection():
            return AgentSession.get(AgentSession.call_sid == call_sid)


@pytest.fixture
def line() -> Iterator[Line]:
    with LocalWorld(settings={"transfer": {"ring_seconds": RING_SECONDS}}) as world:
        yield Line(world)
    pykka.ActorRegistry.stop_all()


def call_tool(model: LiveConnection, name: str, args: dict[str, Any]) -> dict[str, Any]:
    call_id = model.send_tool_call(name, args)
    response: dict[str, Any] = model.wait_for_tool_response(call_id, timeout=WAIT).response
    return response


def wait_for_note(model: LiveConnection, fragment: str, timeout: float = WAIT) -> str:
    """The text of the first client turn that holds ``fragment``."""
    model.wait_for(
        lambda m: any(fragment in c.text for c in m.client_contents),
        timeout,
        f"a note: {fragment}",
    )
    return next(c.text for c in model.client_contents if fragment in c.text)


def ask(caller_model: LiveConnection) -> int:
    asked = call_tool(caller_model, "request_transfer", {"reason": "about the flat lease"})
    assert asked["ok"] is True, asked
    return int(asked["transfer_id"])


def assert_bridged(line: Line, transfer_id: int, caller: SyncSoftphone, owner_sid: str) -> None:
    """Both legs are in the room, the caller's first, the owner's with the whisper."""
    room = f"tars-transfer-{transfer_id}"
    joins = line.world.twilio.wait_for_conference(room, participants=2, timeout=WAIT)
    assert [join.call_sid for join in joins] == [caller.call_sid, owner_sid]
    caller_join, owner_join = joins
    assert caller_join.whisper is None
    assert (caller_join.start_conference_on_enter, caller_join.end_conference_on_exit) == (
        False,
        True,
    )
    assert owner_join.start_conference_on_enter is True
    assert owner_join.whisper is not None
    assert "about the flat lease" in owner_join.whisper
    wait_until(lambda: line.transfer(transfer_id).status == "bridged", "the transfer bridged")
    wait_until(
        lambda: line.session_of(caller.call_sid).end_reason == "transferred",
        "the caller's session ended transferred",
    )
    # TARS handed the calls over: it hung neither of them up, and each leg may last as
    # long as Twilio allows (a screening call was placed with a short limit).
    updates = line.world.twilio.requests_for(Operation.CALLS_UPDATE)
    assert [r for r in updates if r.param("Status")] == []
    assert {r.param("TimeLimit") for r in updates} == {str(BRIDGED_CALL_LIMIT)}


def test_the_owner_on_a_live_call_accepts_and_both_legs_are_bridged(line: Line) -> None:
    with line.store().connection():
        Contact.create(name="Anna", phone=ANNA)
    owner, owner_model = line.dial_in(OWNER_PHONE)
    caller, caller_model = line.dial_in(ANNA)
    transfer_id = ask(caller_model)

    note = wait_for_note(owner_model, "decide_transfer")
    assert f"transfer_id {transfer_id}" in note
    assert "Anna is on the line" in note
    assert "about the flat lease" in note
    row = line.transfer(transfer_id)
    assert (row.status, row.asked_by) == ("asking", "live_call")

    accept = {"transfer_id": transfer_id, "accept": True}
    decided = call_tool(owner_model, "decide_transfer", accept)
    assert decided["ok"] is True
    assert_bridged(line, transfer_id, caller, owner.call_sid)
    wait_until(
        lambda: line.session_of(owner.call_sid).end_reason == "transferred",
        "the owner's session ended transferred",
    )
    row = line.transfer(transfer_id)
    assert row.owner_call_sid == owner.call_sid
    assert row.decided_at is not None
    assert row.ended_at is not None
    assert line.world.twilio.requests_for(Operation.CALLS_CREATE) == []  # no screening call


def test_the_owner_on_a_live_call_declines_and_the_caller_is_offered_a_message(
    line: Line,
) -> None:
    _owner, owner_model = line.dial_in(OWNER_PHONE)
    caller, caller_model = line.dial_in(STRANGER)
    transfer_id = ask(caller_model)
    wait_for_note(owner_model, "decide_transfer")

    decided = call_tool(
        owner_model, "decide_transfer", {"transfer_id": transfer_id, "accept": False}
    )
    assert decided["ok"] is True
    note = wait_for_note(caller_model, "cannot take the call right now")
    assert "take_message" in note
    row = line.transfer(transfer_id)
    assert row.status == "declined"
    assert line.world.twilio.redirects == []
    assert not caller.closed  # the caller stays with TARS
    again = call_tool(owner_model, "decide_transfer", {"transfer_id": transfer_id, "accept": True})
    assert "declined already" in again["error"]
    # Once per call: asking again is refused, and nobody is asked again.
    repeat = call_tool(caller_model, "request_transfer", {"reason": "please, it is urgent"})
    assert "asked already" in repeat["error"]
    with line.store().connection():
        assert Transfer.select().count() == 1


def test_no_answer_in_the_live_call_within_ring_seconds_tells_the_caller(line: Line) -> None:
    _owner, owner_model = line.dial_in(OWNER_PHONE)
    _caller, caller_model = line.dial_in(STRANGER)
    transfer_id = ask(caller_model)
    wait_for_note(owner_model, "decide_transfer")

    note = wait_for_note(caller_model, "did not answer")
    assert "take_message" in note
    row = line.transfer(transfer_id)
    assert row.status == "no_answer"
    assert row.ended_at is not None


def screening_call(line: Line, caller_model: LiveConnection) -> tuple[int, CallRecord]:
    transfer_id = ask(caller_model)
    request = line.world.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
    assert request.param("To") == OWNER_PHONE
    assert request.param("From") == TWILIO_NUMBER
    assert request.param("Timeout") == str(RING_SECONDS)
    call = line.world.twilio.wait_for_call(1, timeout=WAIT)
    wait_until(
        lambda: line.transfer(transfer_id).screening_call_sid == call.sid,
        "the screening call's SID recorded",
    )
    assert line.transfer(transfer_id).status == "ringing"
    return transfer_id, call


def test_owner_away_a_screening_call_is_placed_and_saying_yes_bridges(line: Line) -> None:
    caller, caller_model = line.dial_in(STRANGER)
    transfer_id, call = screening_call(line, caller_model)

    _owner, screening_model = line.answer(call)
    assert "decide_transfer" in screening_model.function_names
    assert "about the flat lease" in screening_model.client_contents[0].text
    assert f"transfer_id {transfer_id}" in screening_model.system_instruction
    assert line.transfer(transfer_id).status == "screening"
    assert line.session_of(call.sid).permission == "screening"
    assert set(screening_model.function_names) == {"end_call", "decide_transfer"}

    decided = call_tool(
        screening_model, "decide_transfer", {"transfer_id": transfer_id, "accept": True}
    )
    assert decided["ok"] is True
    assert_bridged(line, transfer_id, caller, call.sid)


@pytest.mark.parametrize(("key", "outcome"), [("1", "bridged"), ("2", "declined")])
def test_owner_away_the_keypad_answers_the_screening_call(
    line: Line, key: str, outcome: str
) -> None:
    caller, caller_model = line.dial_in(STRANGER)
    transfer_id, call = screening_call(line, caller_model)
    owner, screening_model = line.answer(call)

    owner.send_dtmf(key)
    if outcome == "bridged":
        assert_bridged(line, transfer_id, caller, call.sid)
    else:
        wait_for_note(caller_model, "cannot take the call right now")
        told = wait_for_note(screening_model, "The keypad answered 2 (not now)")
        assert "end the call" in told
        assert line.transfer(transfer_id).status == "declined"
        assert line.world.twilio.redirects == []
    # The key itself never reached the model as a note: it decided.
    assert not any("pressed these keys" in c.text for c in screening_model.client_contents)


def test_owner_away_declines_by_voice(line: Line) -> None:
    _caller, caller_model = line.dial_in(STRANGER)
    transfer_id, call = screening_call(line, caller_model)
    _owner, screening_model = line.answer(call)

    decided = call_tool(
        screening_model, "decide_transfer", {"transfer_id": transfer_id, "accept": False}
    )
    assert "end the call" in decided["result"]
    wait_for_note(caller_model, "cannot take the call right now")
    assert line.transfer(transfer_id).status == "declined"


def test_owner_away_no_answer_after_ring_seconds(line: Line) -> None:
    _caller, caller_model = line.dial_in(STRANGER)
    transfer_id, call = screening_call(line, caller_model)
    # Twilio gives up after the Timeout the call was placed with, and says so.
    missed = line.world.phone(OWNER_PHONE, call_sid=call.sid, direction="outbound-api")
    missed.send_status("no-answer")

    note = wait_for_note(caller_model, "did not answer")
    assert "take_message" in note
    row = line.transfer(transfer_id)
    assert (row.status, row.detail) == ("no_answer", "screening call no-answer")
    # Once per call: the owner's phone is not rung again for the same caller.
    repeat = call_tool(caller_model, "request_transfer", {"reason": "try once more"})
    assert "asked already" in repeat["error"]
    assert len(line.world.twilio.requests_for(Operation.CALLS_CREATE)) == 1


def test_one_screening_call_at_a_time_and_one_ask_per_number(line: Line) -> None:
    first, first_model = line.dial_in(STRANGER)
    transfer_id, _call = screening_call(line, first_model)
    _second, second_model = line.dial_in(ANNA)
    busy = call_tool(second_model, "request_transfer", {"reason": "me too"})
    assert "being asked about another caller" in busy["error"]

    # The first caller hangs up and calls again at once: the owner is not rung again.
    first.hang_up()
    wait_until(lambda: line.transfer(transfer_id).status == "canceled", "the first canceled")
    _again, again_model = line.dial_in(STRANGER)
    refused = call_tool(again_model, "request_transfer", {"reason": "still me"})
    assert "a few minutes ago" in refused["error"]
    assert len(line.world.twilio.requests_for(Operation.CALLS_CREATE)) == 1


def test_a_caller_who_hangs_up_cancels_the_screening_call(line: Line) -> None:
    caller, caller_model = line.dial_in(STRANGER)
    transfer_id, call = screening_call(line, caller_model)

    caller.hang_up()
    line.world.twilio.wait_for_call_status(call.sid, "canceled", timeout=WAIT)
    wait_until(lambda: line.transfer(transfer_id).status == "canceled", "the transfer canceled")


def test_connect_call_bridges_the_owners_call_to_a_contact(line: Line) -> None:
    with line.store().connection():
        Contact.create(name="Anna", phone=ANNA)
    owner, owner_model = line.dial_in(OWNER_PHONE)

    connected = call_tool(owner_model, "connect_call", {"to": "anna"})
    assert connected["ok"] is True
    redirect = line.world.twilio.wait_for_redirect(1, timeout=WAIT)
    assert redirect.call_sid == owner.call_sid
    [dial] = line.world.twilio.dials
    assert (dial.call_sid, dial.number, dial.caller_id) == (owner.call_sid, ANNA, TWILIO_NUMBER)
    assert dial.timeout == RING_SECONDS
    wait_until(
        lambda: line.session_of(owner.call_sid).end_reason == "connected",
        "the owner's session ended connected",
    )
    transfer_id = int(connected["transfer_id"])
    wait_until(lambda: line.transfer(transfer_id).status == "bridged", "the transfer bridged")
    row = line.transfer(transfer_id)
    assert (row.kind, row.target_number, row.target_name) == ("connect", ANNA, "Anna")


def test_connect_call_refuses_what_is_neither_a_contact_nor_a_number(line: Line) -> None:
    _owner, owner_model = line.dial_in(OWNER_PHONE)
    refused = call_tool(owner_model, "connect_call", {"to": "Bob"})
    assert "neither a contact nor a +E.164 number" in refused["error"]
    assert line.world.twilio.redirects == []


def test_only_the_owner_decides_and_only_callers_ask(line: Line) -> None:
    _owner, owner_model = line.dial_in(OWNER_PHONE)
    _caller, caller_model = line.dial_in(STRANGER)
    assert "request_transfer" in caller_model.function_names
    assert "decide_transfer" not in caller_model.function_names
    assert "connect_call" not in caller_model.function_names
    assert "request_transfer" not in owner_model.function_names
    transfer_id = ask(caller_model)
    # A caller naming its own transfer is refused before any handler runs.
    accept = {"transfer_id": transfer_id, "accept": True}
    refused = call_tool(caller_model, "decide_transfer", accept)
    assert "not available" in refused["error"]
    assert line.transfer(transfer_id).status == "asking"


# --- a Router that fails mid-transfer --------------------------------------------------------


class Boom:
    """Told to the Router by a test: it fails on it, and the root supervisor starts another."""


@pytest.fixture
def breakable_router(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Router.on_receive

    def on_receive(self: Router, message: Any) -> Any:
        if isinstance(message, Boom):
            raise RuntimeError("router failure injected by the test")
        return original(self, message)

    monkeypatch.setattr(Router, "on_receive", on_receive)


def crash_router() -> None:
    [router] = pykka.ActorRegistry.get_by_class(Router)
    router.tell(Boom())
    wait_until(
        lambda: pykka.ActorRegistry.get_by_class(Router) not in ([], [router]),
        "a new Router",
    )


def test_a_router_restarted_while_the_owner_decides_still_keeps_the_deadline(
    breakable_router: None, line: Line
) -> None:
    _owner, owner_model = line.dial_in(OWNER_PHONE)
    _caller, caller_model = line.dial_in(STRANGER)
    transfer_id = ask(caller_model)
    wait_for_note(owner_model, "decide_transfer")

    crash_router()
    note = wait_for_note(caller_model, "did not answer")
    assert "take_message" in note
    assert line.transfer(transfer_id).status == "no_answer"


def test_a_router_restarted_mid_bridge_finishes_it_once(breakable_router: None, line: Line) -> None:
    owner, owner_model = line.dial_in(OWNER_PHONE)
    caller, caller_model = line.dial_in(STRANGER)
    transfer_id = ask(caller_model)
    wait_for_note(owner_model, "decide_transfer")
    # Twilio redirects the caller's leg at once, and its answer is slow: the Router that
    # asked fails before it hears it.
    line.world.twilio.set_answer_delay(Operation.CALLS_UPDATE, 0.5)
    decided = call_tool(
        owner_model, "decide_transfer", {"transfer_id": transfer_id, "accept": True}
    )
    assert decided["ok"] is True
    crash_router()
    line.world.twilio.set_answer_delay(Operation.CALLS_UPDATE, 0.0)

    assert_bridged(line, transfer_id, caller, owner.call_sid)
    # Each leg was redirected once, whatever the new Router asked again.
    assert [r.call_sid for r in line.world.twilio.redirects] == [caller.call_sid, owner.call_sid]


def test_a_screening_call_twilio_never_reports_on_ends_at_tars_own_deadline(line: Line) -> None:
    _caller, caller_model = line.dial_in(STRANGER)
    transfer_id, call = screening_call(line, caller_model)
    # No status callback ever comes: TARS gives up after ring_seconds and the dialling time,
    # and cancels the call it placed.
    note = wait_for_note(caller_model, "did not answer", timeout=RING_SECONDS + DIAL_SECONDS + WAIT)
    assert "take_message" in note
    line.world.twilio.wait_for_call_status(call.sid, "canceled", timeout=WAIT)
    assert line.transfer(transfer_id).status == "no_answer"


def test_the_owner_hanging_up_the_screening_call_undecided_is_no_answer(line: Line) -> None:
    _caller, caller_model = line.dial_in(STRANGER)
    transfer_id, call = screening_call(line, caller_model)
    owner, _screening_model = line.answer(call)

    owner.hang_up()
    wait_for_note(caller_model, "did not answer")
    row = line.transfer(transfer_id)
    assert (row.status, row.detail) == ("no_answer", "the owner hung up without deciding")


def test_the_owners_live_call_ending_before_the_answer_phones_them_instead(line: Line) -> None:
    owner, owner_model = line.dial_in(OWNER_PHONE)
    _caller, caller_model = line.dial_in(STRANGER)
    transfer_id = ask(caller_model)
    wait_for_note(owner_model, "decide_transfer")

    owner.hang_up()
    request = line.world.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
    assert request.param("To") == OWNER_PHONE
    wait_until(lambda: line.transfer(transfer_id).status == "ringing", "the owner phoned")
    assert line.transfer(transfer_id).asked_by == "screening_call"
