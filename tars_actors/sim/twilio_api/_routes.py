"""The REST stand-in's request handling: authenticate, route, answer, record (server threads)."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from tars_actors.sim.twilio_api._listing import call_filter, list_page, message_filter
from tars_actors.sim.twilio_api._records import (
    API_VERSION,
    CallRecord,
    MessageRecord,
    Operation,
    RecordedRequest,
    RedirectRecord,
)
from tars_actors.sim.twilio_api._requests import (
    Params,
    RestError,
    authenticate,
    error_body,
    route,
)
from tars_actors.sim.twilio_api._resources import call_json, message_json, number_json
from tars_actors.sim.twilio_api._state import RestState, new_sid
from tars_actors.sim.twilio_api._twiml import read_bridges

__all__ = ["Answer", "Reply", "RestRoutes"]

# Status, JSON body, and what to do once the answer has been sent (run call hooks).
Answer = tuple[int, dict[str, Any], Callable[[], None] | None]


class Reply(NamedTuple):
    """What the server sends: wait ``delay`` seconds, answer, then run ``after``."""

    status: int
    payload: dict[str, Any]
    after: Callable[[], None] | None
    delay: float


class RestRoutes:
    """Answers one request at a time from any server thread, changing ``state`` as Twilio would.

    ``call_created(record)``, ``call_ended(record)`` and ``call_redirected(record, redirect)``
    are run after the answer went out.
    """

    def __init__(
        self,
        state: RestState,
        *,
        call_created: Callable[[CallRecord], None],
        call_ended: Callable[[CallRecord], None],
        call_redirected: Callable[[CallRecord, RedirectRecord], None],
    ) -> None:
        self._state = state
        self._changes = state.changes
        self._call_created = call_created
        self._call_ended = call_ended
        self._call_redirected = call_redirected

    def respond(self, *, method: str, target: str, authorization: str | None, body: str) -> Reply:
        """Answer one request and record it, answered or refused.

        The request has had its effect and is recorded before the reply's ``delay`` starts.
        """
        split = urlsplit(target)
        query = tuple(parse_qsl(split.query, keep_blank_values=True))
        form = tuple(parse_qsl(body, keep_blank_values=True)) if method == "POST" else ()
        operation: Operation | None = None
        after: Callable[[], None] | None = None
        try:
            authenticate(
                authorization,
                account_sid=self._state.account_sid,
                auth_token=self._state.auth_token,
            )
            operation, match = route(method, split.path, account_sid=self._state.account_sid)
            self._consume_failure(operation)
            status, payload, after = self._dispatch(operation, match, form, query)
        except RestError as error:
            status, payload = error.status, error_body(error.status, error.code, error.message)
        recorded = RecordedRequest(
            method=method,
            path=split.path,
            query=query,
            form=form,
            operation=operation,
            status=status,
            at=time.monotonic(),
        )
        with self._changes.lock:
            self._state.requests.append(recorded)
        self._changes.notify()
        delay = 0.0 if operation is None else self._state.answer_delay(operation)
        return Reply(status, payload, after, delay)

    def _consume_failure(self, operation: Operation) -> None:
        with self._changes.lock:
            failures = self._state.failures.get(operation)
            failure = failures.popleft() if failures else None
        if failure is not None:
            raise RestError(failure.status, failure.code, failure.message)

    def _dispatch(
        self,
        operation: Operation,
        match: re.Match[str],
        form: tuple[tuple[str, str], ...],
        query: tuple[tuple[str, str], ...],
    ) -> Answer:
        params = Params(form or query)
        match operation:
            case Operation.CALLS_CREATE:
                return self._create_call(params)
            case Operation.CALLS_FETCH:
                return 200, call_json(self._known_call(match)), None
            case Operation.CALLS_UPDATE:
                return self._update_call(self._known_call(match), params)
            case Operation.CALLS_LIST:
                return 200, self._list_calls(match.group(0), params), None
            case Operation.MESSAGES_CREATE:
                return 201, self._create_message(params), None
            case Operation.MESSAGES_LIST:
                return 200, self._list_messages(match.group(0), params), None
            case Operation.NUMBERS_LIST:
                return 200, self._list_numbers(match.group(0), params), None
            case Operation.NUMBERS_UPDATE:
                return 200, self._update_number(match["sid"], params), None

    def _known_call(self, match: re.Match[str]) -> CallRecord:
        with self._changes.lock:
            record = self._state.calls.get(match["sid"])
        if record is None:
            raise RestError(404, 20404, f"The requested resource {match.group(0)} was not found")
        return record

    def _create_call(self, params: Params) -> Answer:
        to, from_ = params.get("To"), params.get("From")
        if not to:
            raise RestError(400, 21201, "No 'To' number is specified")
        if not from_:
            raise RestError(400, 21213, "No 'From' number is specified")
        twiml, url = params.get("Twiml"), params.get("Url")
        if not twiml and not url and not params.get("ApplicationSid"):
            raise RestError(400, 21205, "Url parameter is required.")
        time_limit, timeout = params.get("TimeLimit"), params.get("Timeout")
        record = CallRecord(
            sid=new_sid("CA"),
            account_sid=self._state.account_sid,
            to=to,
            from_=from_,
            status="queued",
            twiml=twiml,
            url=url,
            method=params.get("Method"),
            status_callback=params.get("StatusCallback"),
            status_callback_events=params.all("StatusCallbackEvent"),
            status_callback_method=params.get("StatusCallbackMethod"),
            machine_detection=params.get("MachineDetection"),
            async_amd=params.get("AsyncAmd"),
            time_limit=int(time_limit) if time_limit and time_limit.isdigit() else None,
            timeout=int(timeout) if timeout and timeout.isdigit() else None,
            answered_by=None,
            created_at=self._state.now(),
        )
        with self._changes.lock:
            self._state.calls[record.sid] = record
        self._changes.notify()
        after = functools.partial(self._call_created, record)
        return 201, call_json(record), after

    def _update_call(self, record: CallRecord, params: Params) -> Answer:
        """Hang up (``Status``) or redirect (``Twiml``/``Url``) a call that has not ended.

        A redirect replaces the call's instructions and is recorded with the conference joins
        and dials its TwiML asks for; TwiML that does not parse changes nothing (12100).
        """
        status = params.get("Status")
        if status is not None and status not in ("completed", "canceled"):
            raise RestError(400, 21218, f"Invalid value for Status: {status}")
        twiml, url = params.get("Twiml") or None, params.get("Url") or None
        redirected: RedirectRecord | None = None
        with self._changes.lock:
            current = self._state.calls[record.sid]
            if current.ended:
                # What a hang-up of a call that already ended gets from Twilio.
                raise RestError(
                    404,
                    20404,
                    f"The requested resource /{API_VERSION}/Accounts/{self._state.account_sid}"
                    f"/Calls/{record.sid}.json was not found",
                )
            if (twiml or url) and status is None and current.status != "in-progress":
                raise RestError(400, 21220, "Call is not in-progress. Cannot redirect.")
            now = self._state.now()
            bridges = None if twiml is None else read_bridges(twiml, call_sid=record.sid, at=now)
            updated = current
            if status == "completed" or (status == "canceled" and current.status != "in-progress"):
                final = "completed" if current.status == "in-progress" else "canceled"
                updated = self._state.transition(current, final, by_request=True)
            elif twiml or url:
                updated = replace(current, twiml=twiml, url=url)
                self._state.calls[record.sid] = updated
                redirected = RedirectRecord(call_sid=record.sid, twiml=twiml, url=url, at=now)
                self._state.redirects.append(redirected)
                if bridges is not None:
                    for join in bridges.joins:
                        self._state.conferences.setdefault(join.room, []).append(join)
                    self._state.dials.extend(bridges.dials)
        self._changes.notify()
        after = None
        if redirected is not None:
            after = functools.partial(self._call_redirected, updated, redirected)
        elif updated.ended and not current.ended:
            after = functools.partial(self._call_ended, updated)
        return 200, call_json(updated), after

    def _create_message(self, params: Params) -> dict[str, Any]:
        to, body = params.get("To"), params.get("Body")
        from_ = params.get("From") or params.get("MessagingServiceSid")
        if not to:
            raise RestError(400, 21604, "A 'To' phone number is required.")
        if not from_:
            raise RestError(400, 21603, "A 'From' phone number is required.")
        if not body:
            raise RestError(400, 21602, "Message body is required.")
        record = MessageRecord(
            sid=new_sid("SM"),
            account_sid=self._state.account_sid,
            to=to,
            from_=from_,
            body=body,
            status="queued",
            created_at=self._state.now(),
        )
        with self._changes.lock:
            self._state.messages.append(record)
        self._changes.notify()
        return message_json(record)

    def _list_calls(self, path: str, params: Params) -> dict[str, Any]:
        keep = call_filter(params)
        with self._changes.lock:
            calls = list(self._state.calls.values())
        return list_page(calls, key="calls", path=path, params=params, keep=keep, to_json=call_json)

    def _list_messages(self, path: str, params: Params) -> dict[str, Any]:
        keep = message_filter(params)
        with self._changes.lock:
            messages = list(self._state.settle_messages())
        return list_page(
            messages, key="messages", path=path, params=params, keep=keep, to_json=message_json
        )

    def _list_numbers(self, path: str, params: Params) -> dict[str, Any]:
        wanted = params.get("PhoneNumber")
        friendly = params.get("FriendlyName")
        page_size = int(params.get("PageSize") or 50)
        with self._changes.lock:
            numbers = [
                number
                for number in self._state.numbers.values()
                if (wanted is None or number.phone_number == wanted)
                and (friendly is None or number.friendly_name == friendly)
            ]
        return {
            "incoming_phone_numbers": [number_json(n) for n in numbers[:page_size]],
            "end": max(0, min(len(numbers), page_size) - 1),
            "first_page_uri": f"{path}?PageSize={page_size}&Page=0",
            "next_page_uri": None,
            "page": 0,
            "page_size": page_size,
            "previous_page_uri": None,
            "start": 0,
            "uri": f"{path}?PageSize={page_size}&Page=0",
        }

    def _update_number(self, sid: str, params: Params) -> dict[str, Any]:
        with self._changes.lock:
            record = self._state.numbers.get(sid)
            if record is None:
                raise RestError(
                    404,
                    20404,
                    f"The requested resource /{API_VERSION}/Accounts/{self._state.account_sid}"
                    f"/IncomingPhoneNumbers/{sid}.json was not found",
                )
            record = replace(
                record,
                voice_url=params.get("VoiceUrl", record.voice_url),
                voice_method=params.get("VoiceMethod") or record.voice_method,
                status_callback=params.get("StatusCallback", record.status_callback),
                status_callback_method=(
                    params.get("StatusCallbackMethod") or record.status_callback_method
                ),
                friendly_name=params.get("FriendlyName") or record.friendly_name,
            )
            self._state.numbers[sid] = record
        self._changes.notify()
        return number_json(record)
