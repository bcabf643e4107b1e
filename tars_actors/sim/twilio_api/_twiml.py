"""A redirect's TwiML as Twilio reads it: whom its ``<Dial>`` verbs bridge the call to.

Each ``<Dial><Conference>`` becomes a :class:`ConferenceJoin` and each ``<Dial><Number>`` (or
``<Dial>`` with a bare number as its text) a :class:`DialRecord`; the ``<Say>`` verbs before a
``<Dial>`` are what the call heard before it was bridged (its whisper). Other verbs are read
past. A document that is not XML, or whose root is not ``<Response>``, is Twilio's 12100.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from tars_actors.sim.twilio_api._records import ConferenceJoin, DialRecord
from tars_actors.sim.twilio_api._requests import RestError

__all__ = ["Bridges", "read_bridges"]


@dataclass(frozen=True, slots=True)
class Bridges:
    """The conference joins and dials of one TwiML document, in document order."""

    joins: tuple[ConferenceJoin, ...]
    dials: tuple[DialRecord, ...]


def read_bridges(twiml: str, *, call_sid: str, at: datetime) -> Bridges:
    """What ``twiml`` bridges call ``call_sid`` to; raise Twilio's 400/12100 if it cannot be
    parsed."""
    try:
        # The document comes from the client under test on 127.0.0.1, not from strangers.
        root = ET.fromstring(twiml)  # noqa: S314
    except (ET.ParseError, ValueError):
        raise RestError(400, 12100, "Document parse failure") from None
    if root.tag != "Response":
        raise RestError(400, 12100, "Document parse failure")
    joins: list[ConferenceJoin] = []
    dials: list[DialRecord] = []
    said: list[str] = []
    for verb in root:
        if verb.tag == "Say":
            text = "".join(verb.itertext()).strip()
            if text:
                said.append(text)
            continue
        if verb.tag != "Dial":
            continue
        whisper = " ".join(said) or None
        caller_id = verb.get("callerId")
        timeout = _seconds(verb.get("timeout"))
        numbers = [(verb.text or "").strip()]
        for noun in verb:
            if noun.tag == "Conference":
                joins.append(
                    ConferenceJoin(
                        room=(noun.text or "").strip(),
                        call_sid=call_sid,
                        whisper=whisper,
                        start_conference_on_enter=_flag(noun.get("startConferenceOnEnter"), True),
                        end_conference_on_exit=_flag(noun.get("endConferenceOnExit"), False),
                        wait_url=noun.get("waitUrl"),
                        at=at,
                    )
                )
            elif noun.tag == "Number":
                numbers.append((noun.text or "").strip())
        dials.extend(
            DialRecord(
                call_sid=call_sid,
                number=number,
                caller_id=caller_id,
                timeout=timeout,
                whisper=whisper,
                at=at,
            )
            for number in numbers
            if number
        )
    return Bridges(tuple(joins), tuple(dials))


def _flag(value: str | None, default: bool) -> bool:
    """A TwiML boolean attribute: ``true`` or ``false``; anything else keeps Twilio's default."""
    lowered = (value or "").strip().lower()
    if lowered not in ("true", "false"):
        return default
    return lowered == "true"


def _seconds(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isdigit() else None
