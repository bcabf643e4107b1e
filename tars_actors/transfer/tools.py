"""Tools for putting calls through: ``request_transfer`` (anyone asks to speak to the owner),
``decide_transfer`` (the owner's answer) and ``connect_call`` (the owner asks to be connected
to someone). Each asks the Router, which keeps the transfer's row and joins the calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import peewee
import structlog

from tars_actors.messaging.routing import RouterUnavailable
from tars_actors.messaging.tools import ToolServices, words_of
from tars_actors.store import E164_PATTERN, Contact
from tars_actors.tools.registry import Param, ToolContext, ToolOutcome, ToolSpec
from tars_actors.transfer.messages import AskTransfer, ConnectCall, DecideTransfer, TransferReply

__all__ = ["transfer_tools"]

log = structlog.get_logger("tars.tools")


def _ask(
    services: ToolServices, message: AskTransfer | DecideTransfer | ConnectCall
) -> ToolOutcome:
    try:
        reply: TransferReply = services.switchboard.ask(message)
    except RouterUnavailable as error:
        log.error("tool.router_unavailable", error=str(error))  # noqa: TRY400 (no traceback to add)
        return ToolOutcome(response={"error": str(error)})
    if not reply.ok:
        return ToolOutcome(response={"error": reply.detail})
    response: dict[str, Any] = {"ok": True, "result": reply.detail}
    if reply.transfer_id is not None:
        response["transfer_id"] = reply.transfer_id
    return ToolOutcome(response=response)


def transfer_tools(services: ToolServices) -> list[ToolSpec]:
    owner = services.settings.owner.name
    store = services.store

    def request_transfer(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        return _ask(
            services,
            AskTransfer(session_id=context.session_id, reason=words_of(context, args["reason"])),
        )

    def decide_transfer(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        return _ask(
            services,
            DecideTransfer(
                transfer_id=int(args["transfer_id"]),
                accept=bool(args["accept"]),
                session_id=context.session_id,
            ),
        )

    def connect_call(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        wanted = str(args["to"]).strip()
        name: str | None = None
        if E164_PATTERN.fullmatch(wanted):
            number = wanted
            with store.connection():
                contact = Contact.get_or_none(Contact.phone == number)
            name = None if contact is None else str(contact.name)
        else:
            with store.connection():
                contact = Contact.get_or_none(peewee.fn.LOWER(Contact.name) == wanted.casefold())
                known = [str(c.name) for c in Contact.select().order_by(Contact.name)]
            if contact is None:
                names = ", ".join(f'"{n}"' for n in known) or "none"
                return ToolOutcome(
                    response={
                        "error": f'"{wanted}" is neither a contact nor a +E.164 number; '
                        f"contacts: {names}"
                    }
                )
            number, name = str(contact.phone), str(contact.name)
        if number == services.settings.twilio.phone_number:
            return ToolOutcome(response={"error": "that is TARS's own number"})
        return _ask(services, ConnectCall(session_id=context.session_id, number=number, name=name))

    return [
        ToolSpec(
            name="request_transfer",
            description=(
                f"The caller asks to speak with {owner} in person: ask {owner} whether to put "
                "them through. The answer comes later as a note; meanwhile keep the caller "
                "company."
            ),
            params={
                "reason": Param(
                    type="string",
                    description="Who the caller is and why they want to talk, in their words.",
                    max_length=300,
                )
            },
            handler=request_transfer,
            slow=True,
        ),
        ToolSpec(
            name="decide_transfer",
            description=(
                "Answer a caller's request to be put through (from a note): accept joins "
                "the caller to this call's phone; decline offers them a message instead."
            ),
            params={
                "transfer_id": Param(
                    type="integer", description="The transfer id from the note.", minimum=1
                ),
                "accept": Param(type="boolean", description="True to take the call."),
            },
            handler=decide_transfer,
            slow=True,
        ),
        ToolSpec(
            name="connect_call",
            description=(
                f"Connect {owner}'s phone call to someone (a contact's name or a +E.164 "
                "number), with the Twilio number as caller ID; this call with TARS ends."
            ),
            params={
                "to": Param(
                    type="string",
                    description="A contact's name or a +E.164 number.",
                    max_length=100,
                )
            },
            handler=connect_call,
            slow=True,
        ),
    ]
