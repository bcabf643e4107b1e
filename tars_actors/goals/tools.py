"""Tools for calls TARS places and the people it knows: ``call_contact`` and
``report_goal_outcome``, ``add_contact``, ``list_contacts`` and ``send_sms``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import peewee
import structlog

from tars_actors.actor_messages import SendSms
from tars_actors.audio.dtmf import KEYS_PATTERN
from tars_actors.goals.desk import GoalError, create_goal, record_outcome
from tars_actors.messaging.routing import SMS_MAX_CHARS
from tars_actors.messaging.tools import ToolServices
from tars_actors.store import E164_PATTERN, Contact, utcnow
from tars_actors.tools.registry import Param, ToolContext, ToolOutcome, ToolSpec

__all__ = ["goal_tools"]

log = structlog.get_logger("tars.tools")


def goal_tools(services: ToolServices) -> list[ToolSpec]:
    store = services.store
    owner = services.settings.owner.name

    def call_contact(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        goals, telephony = services.goals, services.telephony()
        if goals is None or telephony is None:
            return ToolOutcome(response={"error": "placing calls is not available right now"})
        with store.connection():
            try:
                goal = create_goal(
                    store,
                    callee=args["contact"],
                    objective=args["objective"],
                    parent_session_id=context.session_id,
                )
            except GoalError as error:
                return ToolOutcome(response={"error": str(error)})
        # A lookup: the CallSupervisor that is live when Twilio answers gets the outcome.
        goals.place(goal, telephony, services.calls)
        return ToolOutcome(
            response={
                "ok": True,
                "goal_id": goal.id,
                "result": f"Calling {goal.contact_name} now; {owner} gets a report when the "
                "call is over.",
            }
        )

    def report_goal_outcome(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        with store.connection():
            try:
                goal = record_outcome(
                    store, context.session_id, outcome=args["outcome"], achieved=args["achieved"]
                )
            except GoalError as error:
                return ToolOutcome(response={"error": str(error)})
        log.info("tool.goal_outcome", goal_id=goal.id, achieved=args["achieved"])
        return ToolOutcome(response={"ok": True, "result": "Outcome recorded."})

    def press_keys(_context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        keys = str(args["keys"]).replace(" ", "")
        if not KEYS_PATTERN.fullmatch(keys):
            return ToolOutcome(
                response={"error": "keys are 1 to 32 of 0-9, * and #, and w for a short pause"}
            )
        return ToolOutcome(response={"ok": True, "pressed": keys}, keys=keys)

    def add_contact(_context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        phone = args["phone"]
        if not E164_PATTERN.fullmatch(phone):
            return ToolOutcome(
                response={"error": f"{phone!r} is not a phone number in +E.164 form"}
            )
        with store.connection():
            try:
                with store.transaction():
                    contact = Contact.create(
                        name=args["name"],
                        phone=phone,
                        relation=args.get("relation"),
                        created_at=utcnow(),
                    )
            except peewee.IntegrityError:
                return ToolOutcome(response={"error": f"{phone} is already a contact"})
        return ToolOutcome(
            response={"ok": True, "result": f"Added {contact.name}", "contact_id": contact.id}
        )

    def list_contacts(_context: ToolContext, _args: Mapping[str, Any]) -> ToolOutcome:
        with store.connection():
            contacts = [
                {"name": c.name, "phone": c.phone, "relation": c.relation or ""}
                for c in Contact.select().order_by(Contact.name)
            ]
        return ToolOutcome(response={"ok": True, "contacts": contacts})

    def send_sms(_context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        to = args["to"].strip()
        if not E164_PATTERN.fullmatch(to):
            with store.connection():
                contact = Contact.get_or_none(peewee.fn.LOWER(Contact.name) == to.casefold())
            if contact is None:
                return ToolOutcome(
                    response={"error": f'"{to}" is neither a contact nor a +E.164 number'}
                )
            to = str(contact.phone)
        telephony = services.telephony()
        if telephony is None:
            return ToolOutcome(response={"error": "sending texts is not available right now"})
        telephony.tell(SendSms(to=to, body=args["message"]))
        return ToolOutcome(response={"ok": True, "result": f"Sending the text to {to}."})

    return [
        ToolSpec(
            name="call_contact",
            description=(
                f"Phone someone on {owner}'s behalf with an objective (a contact's name or "
                f"a +E.164 number). {owner} gets a short report when the call is over."
            ),
            params={
                "contact": Param(
                    type="string",
                    description="A contact's name or a +E.164 number.",
                    max_length=100,
                ),
                "objective": Param(
                    type="string", description="What the call should achieve.", max_length=1000
                ),
            },
            handler=call_contact,
            slow=True,
        ),
        ToolSpec(
            name="report_goal_outcome",
            description="Record what came of this call's objective, before ending the call.",
            params={
                "outcome": Param(
                    type="string",
                    description="What was agreed or found out, in a sentence or two.",
                    max_length=1000,
                ),
                "achieved": Param(type="boolean", description="Whether the objective was met."),
            },
            handler=report_goal_outcome,
            slow=True,
        ),
        ToolSpec(
            name="press_keys",
            description=(
                "Press keys on the phone's keypad, to get through a phone menu (e.g. '1', "
                "or '2w123#' with w a half-second pause). Then listen for what comes next."
            ),
            params={
                "keys": Param(
                    type="string", description="0-9, * and #, and w to pause.", max_length=40
                )
            },
            handler=press_keys,
        ),
        ToolSpec(
            name="add_contact",
            description=f"Add someone to {owner}'s contacts; their calls are then greeted by name.",
            params={
                "name": Param(type="string", description="Their name.", max_length=100),
                "phone": Param(type="string", description="Their +E.164 number.", max_length=20),
                "relation": Param(
                    type="string",
                    description="Who they are to the owner (e.g. sister, dentist).",
                    required=False,
                    max_length=100,
                ),
            },
            handler=add_contact,
            slow=True,
        ),
        ToolSpec(
            name="list_contacts",
            description=f"List {owner}'s contacts.",
            handler=list_contacts,
            slow=True,
        ),
        ToolSpec(
            name="send_sms",
            description="Send a text message to a contact (by name) or a +E.164 number.",
            params={
                "to": Param(
                    type="string", description="A contact's name or a number.", max_length=100
                ),
                "message": Param(type="string", description="The text.", max_length=SMS_MAX_CHARS),
            },
            handler=send_sms,
            slow=True,
        ),
    ]
