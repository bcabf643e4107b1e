"""A local stand-in for the Twilio REST API (calls, messages, phone numbers) that records requests.

The real twilio client reaches it with::

    client = twilio.rest.Client(account_sid, auth_token)
    client.edge = client.region = None               # ignore TWILIO_EDGE/TWILIO_REGION
    client.api.base_url = stand_in.base_url          # "http://127.0.0.1:PORT"

(:meth:`TwilioRestStandIn.make_client` does exactly this). Every v2010 resource is built from
``client.api`` (``Domain.absolute_url`` joins ``base_url`` with ``/2010-04-01/...``), so
replacing that one attribute redirects calls, messages and numbers; clearing ``edge`` and
``region`` keeps ``TWILIO_EDGE``/``TWILIO_REGION`` from rewriting the host
(``ClientBase.get_hostname``; ``environment={}`` does not, since twilio reads
``environment or os.environ``).
The client sends form-encoded POSTs with Basic auth and turns error JSON
``{"code", "message", "status"}`` into ``TwilioRestException``.

The stand-in only answers requests: it does not fetch TwiML nor send status callbacks itself.
Hooks (:meth:`TwilioRestStandIn.on_call_created`, :meth:`~TwilioRestStandIn.on_call_ended`)
let the demo and tests play the callee, e.g. with the softphone.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hmac
import json
import queue
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from twilio.rest import Client

from tars_actors.sim._waiting import Changes

__all__ = [
    "ENDED_STATUSES",
    "CallRecord",
    "MessageRecord",
    "Operation",
    "PhoneNumberRecord",
    "RecordedRequest",
    "TwilioRestStandIn",
]

API_VERSION = "2010-04-01"
ENDED_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
_CALL_STATUSES = frozenset({"queued", "ringing", "in-progress"}) | ENDED_STATUSES


class Operation(enum.StrEnum):
    """The REST operations the stand-in implements, named as in twilio-python."""

    CALLS_CREATE = "calls.create"
    CALLS_FETCH = "calls.fetch"
    CALLS_UPDATE = "calls.update"
    MESSAGES_CREATE = "messages.create"
    NUMBERS_LIST = "incoming_phone_numbers.list"
    NUMBERS_UPDATE = "incoming_phone_numbers.update"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One HTTP request as received, with the stand-in's answer."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    form: tuple[tuple[str, str], ...]
    operation: Operation | None
    status: int
    at: float

    def param(self, name: str) -> str | None:
        """The first value of ``name`` in the form, else in the query."""
        values = self.params(name)
        return values[0] if values else None

    def params(self, name: str) -> tuple[str, ...]:
        """All values of a repeated parameter (e.g. ``StatusCallbackEvent``)."""
        found = tuple(value for key, value in self.form if key == name)
        return found or tuple(value for key, value in self.query if key == name)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """A call as the stand-in knows it; a new record replaces the old one on each change."""

    sid: str
    account_sid: str
    to: str
    from_: str
    status: str
    twiml: str | None
    url: str | None
    method: str | None
    status_callback: str | None
    status_callback_events: tuple[str, ...]
    status_callback_method: str | None
    machine_detection: str | None
    async_amd: str | None
    time_limit: int | None
    answered_by: str | None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by_request: bool = False

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def duration(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return int((self.ended_at - self.started_at).total_seconds())


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneNumberRecord:
    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    voice_url: str | None = None
    voice_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    code: int
    message: str


class _RestError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_CallHook = Callable[[CallRecord], object]

_ACCOUNT = r"/2010-04-01/Accounts/(?P<account>[^/]+)"
_ROUTES: tuple[tuple[str, re.Pattern[str], Operation], ...] = (
    ("POST", re.compile(_ACCOUNT + r"/Calls\.json"), Operation.CALLS_CREATE),
    ("GET", re.compile(_ACCOUNT + r"/Calls/(?P<sid>[^/]+)\.json"), Operation.CALLS_FETCH),
    ("POST", re.compile(_ACCOUNT + r"/Calls/(?P<sid>[^/]+)\.json"), Operation.CALLS_UPDATE),
    ("POST", re.compile(_ACCOUNT + r"/Messages\.json"), Operation.MESSAGES_CREATE),
    ("GET", re.compile(_ACCOUNT + r"/IncomingPhoneNumbers\.json"), Operation.NUMBERS_LIST),
    (
        "POST",
        re.compile(_ACCOUNT + r"/IncomingPhoneNumbers/(?P<sid>[^/]+)\.json"),
        Operation.NUMBERS_UPDATE,
    ),
)


def _new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def _error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, stand_in: TwilioRestStandIn) -> None:
        self.stand_in = stand_in
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded instead of printed."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        status, payload, after = self.server.stand_in._respond(
            method=self.command,
            target=self.path,
            authorization=self.headers.get("Authorization"),
            body=body,
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        if after is not None:
            after()


class TwilioRestStandIn:
    """The REST stand-in server; thread-safe, with waitable records of everything it saw."""

    def __init__(
        self,
        *,
        auth_token: str,
        account_sid: str = "ACtest00000000000000000000000000",
        phone_numbers: Iterable[str] = ("+15550100000",),
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._changes = Changes()
        self._requests: list[RecordedRequest] = []
        self._calls: dict[str, CallRecord] = {}
        self._messages: list[MessageRecord] = []
        self._numbers: dict[str, PhoneNumberRecord] = {}
        self._failures: dict[Operation, deque[_Failure]] = {}
        self._created_hooks: list[_CallHook] = []
        self._ended_hooks: list[_CallHook] = []
        self._hook_errors: list[str] = []
        self._hook_queue: queue.SimpleQueue[tuple[_CallHook, CallRecord] | None] = (
            queue.SimpleQueue()
        )
        self._hook_thread = threading.Thread(
            target=self._run_hooks, name="twilio-rest-hooks", daemon=True
        )
        self._server: _HttpServer | None = None
        self._server_thread: threading.Thread | None = None
        for number in phone_numbers:
            self.seed_phone_number(number)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = _HttpServer(self)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="twilio-rest-stand-in",
            daemon=True,
        )
        self._server_thread.start()
        self._hook_thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._hook_thread.is_alive():
            self._hook_queue.put(None)
            self._hook_thread.join(5.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the stand-in first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What ``client.api.base_url`` (``[twilio] api_base_url``) must be set to."""
        return f"http://127.0.0.1:{self.port}"

    def make_client(self) -> Client:
        """A real twilio client pointed at this stand-in, immune to TWILIO_EDGE/REGION."""
        client = Client(self.account_sid, self.auth_token)
        client.edge = None
        client.region = None
        client.api.base_url = self.base_url
        return client

    # -- scripting ----------------------------------------------------------------------------

    def seed_phone_number(
        self, phone_number: str, *, friendly_name: str | None = None
    ) -> PhoneNumberRecord:
        record = PhoneNumberRecord(
            sid=_new_sid("PN"),
            account_sid=self.account_sid,
            phone_number=phone_number,
            friendly_name=friendly_name or phone_number,
        )
        with self._changes.lock:
            self._numbers[record.sid] = record
        self._changes.notify()
        return record

    def fail_next(
        self,
        operation: Operation,
        *,
        status: int = 500,
        code: int = 20500,
        message: str = "Internal Server Error",
        times: int = 1,
    ) -> None:
        """The next ``times`` requests of ``operation`` fail with this Twilio error."""
        with self._changes.lock:
            failures = self._failures.setdefault(operation, deque())
            failures.extend(_Failure(status, code, message) for _ in range(times))

    def on_call_created(self, hook: _CallHook) -> None:
        """Call ``hook(call)`` after each successful calls.create has been answered.

        Hooks run one at a time, in order, on a thread of their own: they may block (answer
        with a softphone, say) without holding up the REST client.
        """
        self._created_hooks.append(hook)

    def on_call_ended(self, hook: _CallHook) -> None:
        """Call ``hook(call)`` once per call when it reaches an ended status, however it did."""
        self._ended_hooks.append(hook)

    def set_call_status(
        self, sid: str, status: str, *, answered_by: str | None = None
    ) -> CallRecord:
        """Move a call on as the network would: ringing, in-progress (answered), or ended.

        Ending an ended call again changes nothing; reviving one is an error.
        """
        if status not in _CALL_STATUSES:
            raise ValueError(f"unknown call status {status!r}")
        with self._changes.lock:
            record = self._calls.get(sid)
            if record is None:
                raise KeyError(f"no call {sid}")
            if record.ended:
                if status in ENDED_STATUSES:
                    return record
                raise ValueError(f"call {sid} already ended ({record.status})")
            updated = self._transition(record, status, answered_by=answered_by)
        self._changes.notify()
        if updated.ended and not record.ended:
            self._queue_hooks(self._ended_hooks, updated)
        return updated

    # -- records ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._changes.lock:
            return list(self._requests)

    @property
    def calls(self) -> list[CallRecord]:
        """Calls in creation order."""
        with self._changes.lock:
            return list(self._calls.values())

    def call(self, sid: str) -> CallRecord:
        with self._changes.lock:
            return self._calls[sid]

    @property
    def messages(self) -> list[MessageRecord]:
        with self._changes.lock:
            return list(self._messages)

    @property
    def phone_numbers(self) -> list[PhoneNumberRecord]:
        with self._changes.lock:
            return list(self._numbers.values())

    @property
    def hook_errors(self) -> list[str]:
        """Exceptions raised by hooks, as ``repr`` strings; tests should expect none."""
        with self._changes.lock:
            return list(self._hook_errors)

    def requests_for(self, operation: Operation) -> list[RecordedRequest]:
        with self._changes.lock:
            return [request for request in self._requests if request.operation is operation]

    # -- waiting ------------------------------------------------------------------------------

    def wait_for(
        self,
        predicate: Callable[[TwilioRestStandIn], bool],
        timeout: float = 5.0,
        what: str = "a condition on the Twilio REST stand-in",
    ) -> None:
        self._changes.wait(lambda: predicate(self), timeout, what)

    async def wait_for_async(
        self,
        predicate: Callable[[TwilioRestStandIn], bool],
        timeout: float = 5.0,
        what: str = "a condition on the Twilio REST stand-in",
    ) -> None:
        await self._changes.wait_async(lambda: predicate(self), timeout, what)

    def wait_for_request(
        self, operation: Operation, count: int = 1, timeout: float = 5.0
    ) -> RecordedRequest:
        """Wait for the ``count``-th request of ``operation`` (answered or refused)."""
        return self._changes.wait_nth(
            lambda: self.requests_for(operation), count, timeout, f"{count} {operation} request(s)"
        )

    def wait_for_call(self, count: int = 1, timeout: float = 5.0) -> CallRecord:
        """Wait until ``count`` calls were created; return the ``count``-th."""
        return self._changes.wait_nth(
            lambda: list(self._calls.values()), count, timeout, f"{count} created call(s)"
        )

    def wait_for_call_status(
        self, sid: str, statuses: str | Sequence[str], timeout: float = 5.0
    ) -> CallRecord:
        wanted = {statuses} if isinstance(statuses, str) else set(statuses)
        self.wait_for(
            lambda s: sid in s._calls and s._calls[sid].status in wanted,
            timeout,
            f"call {sid} to be {'/'.join(sorted(wanted))}",
        )
        return self.call(sid)

    def wait_for_message(self, count: int = 1, timeout: float = 5.0) -> MessageRecord:
        return self._changes.wait_nth(lambda: self._messages, count, timeout, f"{count} message(s)")

    # -- request handling (server threads) ------------------------------------------------------

    def _respond(
        self, *, method: str, target: str, authorization: str | None, body: str
    ) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        split = urlsplit(target)
        query = tuple(parse_qsl(split.query, keep_blank_values=True))
        form = tuple(parse_qsl(body, keep_blank_values=True)) if method == "POST" else ()
        operation: Operation | None = None
        after: Callable[[], None] | None = None
        try:
            self._authenticate(authorization)
            operation, match = self._route(method, split.path)
            self._consume_failure(operation)
            status, payload, after = self._dispatch(operation, match, form, query)
        except _RestError as error:
            status, payload = error.status, _error_body(error.status, error.code, error.message)
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
            self._requests.append(recorded)
        self._changes.notify()
        return status, payload, after

    def _authenticate(self, authorization: str | None) -> None:
        scheme, _, encoded = (authorization or "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        valid = (
            scheme.lower() == "basic"
            and hmac.compare_digest(user.encode(), self.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
        )
        if not valid:
            raise _RestError(401, 20003, "Authenticate")

    def _route(self, method: str, path: str) -> tuple[Operation, re.Match[str]]:
        for route_method, pattern, operation in _ROUTES:
            match = pattern.fullmatch(path)
            if match is not None and route_method == method:
                if match["account"] != self.account_sid:
                    raise _RestError(403, 20003, "Authenticate")
                return operation, match
        raise _RestError(404, 20404, f"The requested resource {path} was not found")

    def _consume_failure(self, operation: Operation) -> None:
        with self._changes.lock:
            failures = self._failures.get(operation)
            failure = failures.popleft() if failures else None
        if failure is not None:
            raise _RestError(failure.status, failure.code, failure.message)

    def _dispatch(
        self,
        operation: Operation,
        match: re.Match[str],
        form: tuple[tuple[str, str], ...],
        query: tuple[tuple[str, str], ...],
    ) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        params = _Params(form or query)
        match operation:
            case Operation.CALLS_CREATE:
                return self._create_call(params)
            case Operation.CALLS_FETCH:
                return 200, self._call_json(self._known_call(match)), None
            case Operation.CALLS_UPDATE:
                return self._update_call(self._known_call(match), params)
            case Operation.MESSAGES_CREATE:
                return 201, self._create_message(params), None
            case Operation.NUMBERS_LIST:
                return 200, self._list_numbers(match.group(0), params), None
            case Operation.NUMBERS_UPDATE:
                return 200, self._update_number(match["sid"], params), None

    def _known_call(self, match: re.Match[str]) -> CallRecord:
        with self._changes.lock:
            record = self._calls.get(match["sid"])
        if record is None:
            raise _RestError(404, 20404, f"The requested resource {match.group(0)} was not found")
        return record

    def _create_call(
        self, params: _Params
    ) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        to, from_ = params.get("To"), params.get("From")
        if not to:
            raise _RestError(400, 21201, "No 'To' number is specified")
        if not from_:
            raise _RestError(400, 21213, "No 'From' number is specified")
        twiml, url = params.get("Twiml"), params.get("Url")
        if not twiml and not url and not params.get("ApplicationSid"):
            raise _RestError(400, 21205, "Url parameter is required.")
        time_limit = params.get("TimeLimit")
        record = CallRecord(
            sid=_new_sid("CA"),
            account_sid=self.account_sid,
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
            answered_by=None,
            created_at=datetime.now(UTC),
        )
        with self._changes.lock:
            self._calls[record.sid] = record
        self._changes.notify()
        after = functools.partial(self._queue_hooks, self._created_hooks, record)
        return 201, self._call_json(record), after

    def _update_call(
        self, record: CallRecord, params: _Params
    ) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        status = params.get("Status")
        if status is not None and status not in ("completed", "canceled"):
            raise _RestError(400, 21218, f"Invalid value for Status: {status}")
        if record.ended:
            # What a hang-up of a call that already ended gets from Twilio.
            raise _RestError(
                404,
                20404,
                f"The requested resource /{API_VERSION}/Accounts/{self.account_sid}"
                f"/Calls/{record.sid}.json was not found",
            )
        redirect = params.get("Twiml") or params.get("Url")
        if redirect is not None and status is None and record.status != "in-progress":
            raise _RestError(400, 21220, "Call is not in-progress. Cannot redirect.")
        with self._changes.lock:
            current = self._calls[record.sid]
            if redirect is not None:
                current = replace(
                    current,
                    twiml=params.get("Twiml") or current.twiml,
                    url=params.get("Url") or current.url,
                )
                self._calls[record.sid] = current
            updated = current
            if status == "completed" or (status == "canceled" and current.status != "in-progress"):
                final = "completed" if current.status == "in-progress" else "canceled"
                updated = self._transition(current, final, by_request=True)
        self._changes.notify()
        after = None
        if updated.ended and not current.ended:
            after = functools.partial(self._queue_hooks, self._ended_hooks, updated)
        return 200, self._call_json(updated), after

    def _transition(
        self,
        record: CallRecord,
        status: str,
        *,
        answered_by: str | None = None,
        by_request: bool = False,
    ) -> CallRecord:
        """Replace ``record`` with its new status; the caller holds the lock."""
        now = datetime.now(UTC)
        updated = replace(
            record,
            status=status,
            answered_by=answered_by or record.answered_by,
            started_at=record.started_at or (now if status == "in-progress" else None),
            ended_at=record.ended_at or (now if status in ENDED_STATUSES else None),
            ended_by_request=record.ended_by_request or by_request,
        )
        self._calls[record.sid] = updated
        return updated

    def _create_message(self, params: _Params) -> dict[str, Any]:
        to, body = params.get("To"), params.get("Body")
        from_ = params.get("From") or params.get("MessagingServiceSid")
        if not to:
            raise _RestError(400, 21604, "A 'To' phone number is required.")
        if not from_:
            raise _RestError(400, 21603, "A 'From' phone number is required.")
        if not body:
            raise _RestError(400, 21602, "Message body is required.")
        record = MessageRecord(
            sid=_new_sid("SM"),
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            body=body,
            status="queued",
            created_at=datetime.now(UTC),
        )
        with self._changes.lock:
            self._messages.append(record)
        self._changes.notify()
        created = _rfc2822(record.created_at)
        return {
            "sid": record.sid,
            "account_sid": record.account_sid,
            "to": record.to,
            "from": record.from_,
            "body": record.body,
            "status": record.status,
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "date_created": created,
            "date_updated": created,
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "api_version": API_VERSION,
            "messaging_service_sid": None,
            "uri": f"/{API_VERSION}/Accounts/{record.account_sid}/Messages/{record.sid}.json",
        }

    def _list_numbers(self, path: str, params: _Params) -> dict[str, Any]:
        wanted = params.get("PhoneNumber")
        friendly = params.get("FriendlyName")
        page_size = int(params.get("PageSize") or 50)
        with self._changes.lock:
            numbers = [
                number
                for number in self._numbers.values()
                if (wanted is None or number.phone_number == wanted)
                and (friendly is None or number.friendly_name == friendly)
            ]
        return {
            "incoming_phone_numbers": [self._number_json(n) for n in numbers[:page_size]],
            "end": max(0, min(len(numbers), page_size) - 1),
            "first_page_uri": f"{path}?PageSize={page_size}&Page=0",
            "next_page_uri": None,
            "page": 0,
            "page_size": page_size,
            "previous_page_uri": None,
            "start": 0,
            "uri": f"{path}?PageSize={page_size}&Page=0",
        }

    def _update_number(self, sid: str, params: _Params) -> dict[str, Any]:
        with self._changes.lock:
            record = self._numbers.get(sid)
            if record is None:
                raise _RestError(
                    404,
                    20404,
                    f"The requested resource /{API_VERSION}/Accounts/{self.account_sid}"
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
            self._numbers[sid] = record
        self._changes.notify()
        return self._number_json(record)

    def _call_json(self, record: CallRecord) -> dict[str, Any]:
        created = _rfc2822(record.created_at)
        duration = record.duration
        return {
            "sid": record.sid,
            "account_sid": record.account_sid,
            "parent_call_sid": None,
            "to": record.to,
            "to_formatted": record.to,
            "from": record.from_,
            "from_formatted": record.from_,
            "phone_number_sid": None,
            "status": record.status,
            "date_created": created,
            "date_updated": _rfc2822(record.ended_at or record.started_at) or created,
            "start_time": _rfc2822(record.started_at),
            "end_time": _rfc2822(record.ended_at),
            "duration": None if duration is None else str(duration),
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": record.answered_by,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"/{API_VERSION}/Accounts/{record.account_sid}/Calls/{record.sid}.json",
        }

    def _number_json(self, record: PhoneNumberRecord) -> dict[str, Any]:
        return {
            "sid": record.sid,
            "account_sid": record.account_sid,
            "phone_number": record.phone_number,
            "friendly_name": record.friendly_name,
            "voice_url": record.voice_url,
            "voice_method": record.voice_method,
            "status_callback": record.status_callback,
            "status_callback_method": record.status_callback_method,
            "capabilities": {"voice": True, "sms": True, "mms": False, "fax": False},
            "api_version": API_VERSION,
            "status": "in-use",
            "origin": "twilio",
            "uri": (
                f"/{API_VERSION}/Accounts/{record.account_sid}"
                f"/IncomingPhoneNumbers/{record.sid}.json"
            ),
        }

    # -- hooks --------------------------------------------------------------------------------

    def _queue_hooks(self, hooks: Sequence[_CallHook], record: CallRecord) -> None:
        for hook in hooks:
            self._hook_queue.put((hook, record))

    def _run_hooks(self) -> None:
        while (item := self._hook_queue.get()) is not None:
            hook, record = item
            try:
                hook(record)
            except Exception as error:  # noqa: BLE001 - a failing hook is recorded for the test
                with self._changes.lock:
                    self._hook_errors.append(repr(error))
                self._changes.notify()


class _Params:
    """Form or query parameters, with repeated keys kept."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: tuple[tuple[str, str], ...]) -> None:
        self._pairs = pairs

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def all(self, name: str) -> tuple[str, ...]:
        return tuple(value for key, value in self._pairs if key == name)
