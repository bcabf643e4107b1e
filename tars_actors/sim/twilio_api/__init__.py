"""A local stand-in for the Twilio REST API (calls, messages, phone numbers) that records requests.

``_records`` holds what it records, ``_state`` the account it keeps, ``_requests`` how a request
is read (auth, routes, parameters), ``_resources`` the JSON it answers, ``_routes`` the
operations, ``_listing`` how calls and messages are filtered and paged, ``_twiml`` whom a
redirect's TwiML bridges a call to, ``_http`` the HTTP server and ``_stand_in`` the
:class:`TwilioRestStandIn` that tests and the demo script.
"""

from __future__ import annotations

from tars_actors.sim.twilio_api._records import (
    ENDED_STATUSES,
    MESSAGE_STATUSES,
    CallRecord,
    ConferenceJoin,
    DialRecord,
    MessageRecord,
    Operation,
    PhoneNumberRecord,
    RecordedRequest,
    RedirectRecord,
)
from tars_actors.sim.twilio_api._stand_in import TwilioRestStandIn

__all__ = [
    "ENDED_STATUSES",
    "MESSAGE_STATUSES",
    "CallRecord",
    "ConferenceJoin",
    "DialRecord",
    "MessageRecord",
    "Operation",
    "PhoneNumberRecord",
    "RecordedRequest",
    "RedirectRecord",
    "TwilioRestStandIn",
]
