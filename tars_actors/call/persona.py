"""Who TARS is on a given call: the session's name, its instructions and its greeting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tars_actors.call.caller_words import for_model, label
from tars_actors.call.permissions import Permission
from tars_actors.runtime.settings import Settings

if TYPE_CHECKING:
    from tars_actors.call.identity import ScreeningRecord

__all__ = ["Caller", "Persona", "owner_verified_turn", "persona_for", "unknown_caller_greeting"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """What is known about the other party when the call starts."""

    number: str
    permission: Permission
    contact_name: str | None = None
    contact_relation: str | None = None
    #: For goal calls: what TARS should achieve, and the ``call_goals`` row.
    objective: str | None = None
    goal_id: int | None = None
    #: For reminder calls (TARS calling the owner): what to remind them of.
    reminder: str | None = None
    #: The owner's number, not yet proven: the PIN typed on the keypad makes it the owner.
    pin_pending: bool = False
    #: For screening calls (TARS asking the owner to take a caller): the transfer.
    screening: ScreeningRecord | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Persona:
    session_name: str
    system_instruction: str
    #: The first client turn: tells the model how to open the call.
    greeting: str


def unknown_caller_greeting(settings: Settings) -> str:
    return (
        f"Hey, this is {settings.owner.name}'s assistant {settings.assistant.name}, "
        "how can I help you?"
    )


def owner_verified_turn(settings: Settings) -> str:
    """What the model hears when the caller's PIN proved them the owner mid-call."""
    owner = settings.owner.name
    return (
        f"[System note] The caller just typed the right PIN on the keypad: you are now talking "
        f"with {owner} themself, and you have full access to all your tools. Tell them in one "
        f"short sentence that they are verified, then carry on with what they asked, or ask "
        f"what you can do."
    )


def persona_for(settings: Settings, caller: Caller) -> Persona:
    assistant = settings.assistant.name
    owner = settings.owner.name
    language = settings.assistant.language
    common = (
        f"You are {assistant}, the personal phone assistant of {owner}. You are speaking on a "
        "phone line: keep answers short and natural, one or two sentences, and never read "
        "out lists of symbols or URLs. When the conversation is over, say a short goodbye "
        "and then call the end_call tool."
    )
    # The caller ID names the session that other calls and the owner see: one line and
    # no brackets, whatever a SIP caller put in it.
    number = label(caller.number)
    transfer = (
        f" If the caller asks to speak with {owner} in person, call request_transfer with "
        f"their reason; while you wait for the answer, keep them company, and never promise "
        f"that {owner} will take the call."
    )
    match caller.permission:
        case Permission.SCREENING if caller.screening is not None:
            screening = caller.screening
            who, reason = screening.caller_name, screening.reason
            return Persona(
                session_name=f"Screening call with {owner}",
                system_instruction=for_model(
                    f"{common} You called {owner} because {who} is on another line and asks "
                    f"to speak with them, about: {reason}. Tell {owner} who is calling and "
                    "why in a sentence or two, and ask whether to put them through: they can "
                    "say yes or press 1 to take the call, or say no or press 2. As soon as "
                    "they answer, call decide_transfer with transfer_id "
                    f"{screening.transfer_id} and accept true or false. If they take it, say "
                    "only that you are putting them through (do not call end_call: the calls "
                    "are joined right after); if not, say goodbye and call end_call. This call "
                    "is for that decision only. Speak the language with the BCP-47 tag "
                    f"{language}."
                ),
                greeting=for_model(
                    f"{owner} just answered your screening call. Tell them that {who} is on "
                    f"the line and asks to speak with them, about: {reason} Then ask whether "
                    "to put them through (say yes or press 1, say no or press 2)."
                ),
            )
        case Permission.OWNER if caller.reminder is not None:
            # A callback request's title holds the caller's words: fenced for the model.
            return Persona(
                session_name=f"Reminder call with {owner}",
                system_instruction=for_model(
                    f"{common} You called {owner} to deliver a reminder, and you have full "
                    f"access to all your tools. The reminder: {caller.reminder}. If {owner} "
                    "wants to be reminded again later (snooze), call create_reminder with the "
                    "same title and a due time such as 'in 10 minutes'; if they dismiss it, "
                    f"just acknowledge. Speak the language with the BCP-47 tag {language}."
                ),
                greeting=for_model(
                    f"{owner} just answered your reminder call. Say you are calling with a "
                    f"reminder, tell them: {caller.reminder} Then ask whether to remind them "
                    "again later or dismiss it."
                ),
            )
        case Permission.OWNER:
            return Persona(
                session_name=f"Call with {owner} (main)",
                system_instruction=(
                    f"{common} You are talking with {owner} themself, calling from their own "
                    f"phone. You have full access to all your tools. Speak the language "
                    f"with the BCP-47 tag {language}."
                ),
                greeting=(
                    f"{owner} just called you. Greet them briefly and warmly in the language "
                    f"with the BCP-47 tag {language}, and ask what you can do."
                ),
            )
        case Permission.CONTACT:
            who = caller.contact_name or number
            relation = f" ({caller.contact_relation})" if caller.contact_relation else ""
            return Persona(
                session_name=f"Call with {who}",
                system_instruction=(
                    f"{common} You are talking with {who}{relation}, a contact of {owner}, "
                    f"calling from {number}. You have limited access: you can take a "
                    f"message for {owner}, record a callback request, or end the call. You "
                    f"cannot share {owner}'s private information.{transfer}"
                ),
                greeting=(
                    f"The caller is {who}. Greet them by name, say you are {owner}'s "
                    f"assistant {assistant}, and ask how you can help."
                ),
            )
        case Permission.GOAL:
            objective = caller.objective or "(no objective given)"
            who = caller.contact_name or number
            return Persona(
                session_name=f"Goal call with {who}",
                system_instruction=(
                    f"{common} You placed this call to {who} on behalf of {owner}. Your "
                    f"objective: {objective}. Introduce yourself as {assistant}, calling on "
                    f"behalf of {owner}. Pursue the objective politely. If a recorded phone menu "
                    "answers, choose with press_keys and listen to what comes next. If you "
                    f"need {owner}'s "
                    "input, use take_message to ask them and wait for the answer. When done, "
                    "record the result with report_goal_outcome, say goodbye and end the call."
                ),
                greeting=(
                    f"The call to {who} has been answered. Introduce yourself as {assistant}, "
                    f"calling on behalf of {owner}, and start on the objective."
                ),
            )
        case Permission.UNKNOWN if caller.pin_pending:
            return Persona(
                session_name=f"Call with {number} (PIN not yet typed)",
                system_instruction=(
                    f"{common} The call comes from {owner}'s own number, but a caller ID "
                    f"can be faked, so the caller is not yet proven to be {owner}. They prove "
                    "it by typing their PIN on the phone's keypad, followed by the hash key; "
                    "you will be told when they have. Never ask them to say the PIN or any "
                    f"digits aloud. Until then you have limited access: you can take a "
                    f"message for {owner} (take_message), record a callback request "
                    f"(request_callback), and end the call. Do not share anything about "
                    f"{owner}'s messages, schedule, contacts or whereabouts."
                ),
                greeting=(
                    f"Greet the caller briefly as {owner}'s assistant {assistant}, in the "
                    f"language with the BCP-47 tag {language}. Tell them that for full access "
                    "they should type their PIN on the keypad, followed by the hash key, and "
                    "that otherwise you can take a message."
                ),
            )
        case Permission.UNKNOWN:
            greeting = unknown_caller_greeting(settings)
            return Persona(
                session_name=f"Call with {number}",
                system_instruction=(
                    f"{common} The caller, {number}, is not someone {owner} has told "
                    f"you about. You have limited access: you can only take a message for "
                    f"{owner} (take_message), record a request for {owner} to call back "
                    f"(request_callback), and end the call. Do not share anything about "
                    f"{owner}'s schedule, contacts or whereabouts.{transfer}"
                ),
                greeting=f'Greet the caller by saying exactly: "{greeting}"',
            )
    raise ValueError(f"no persona for permission {caller.permission!r}")  # pragma: no cover
