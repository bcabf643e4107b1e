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

Besides creating, it lists calls and messages as the daemon does to reconcile after a crash
(``calls.list``/``messages.list``, see ``_listing``). Messages are created ``queued`` and count
as ``sent`` (with a ``date_sent``) ``sms_sent_after`` seconds later, worked out whenever they are
read; :meth:`TwilioRestStandIn.set_answer_delay` holds answers back after the request took
effect, as a slow Twilio would.

A calls.update with ``Twiml`` or ``Url`` redirects an in-progress call: the stand-in records
the redirect and reads the TwiML's ``<Dial>`` verbs (see ``_twiml``) into conference joins, per
room, and dials, as TARS bridges calls. Calls a caller placed (inbound ones, which reach TARS
through its voice webhook, not through calls.create) are made known with
:meth:`TwilioRestStandIn.seed_call`, so that hang-ups and redirects of them find them.

The stand-in only answers requests: it does not fetch TwiML nor send status callbacks itself.
Hooks (:meth:`TwilioRestStandIn.on_call_created`, :meth:`~TwilioRestStandIn.on_call_ended`,
:meth:`~TwilioRestStandIn.on_call_redirected`) let the demo and tests play the callee, e.g.
with the softphone (ending its Media Stream when a redirect replaces ``<Connect><Stream>``, as
Twilio does).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self

from twilio.rest import Client

from tars_actors.sim.twilio_api._http import RestHttpServer
from tars_actors.sim.twilio_api._records import (
    CALL_DIRECTIONS,
    CALL_STATUSES,
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
from tars_actors.sim.twilio_api._routes import RestRoutes
from tars_actors.sim.twilio_api._state import Failure, RestState, new_sid

__all__ = ["TwilioRestStandIn"]

_CallHook = Callable[[CallRecord], object]
_RedirectHook = Callable[[CallRecord, RedirectRecord], object]
# A hook with its arguments bound, as the hooks thread runs it.
_QueuedHook = Callable[[], object]


class TwilioRestStandIn:
    """The REST stand-in server; thread-safe, with waitable records of everything it saw.

    ``sms_sent_after``: seconds after its creation at which a queued message counts as sent
    (``None``: never; it stays queued until :meth:`set_message_status`). ``clock`` gives the
    current time (an aware datetime) for ``date_created``, ``date_sent``, ``start_time`` and
    ``end_time``; the system clock by default.
    """

    def __init__(
        self,
        *,
        auth_token: str,
        account_sid: str = "ACtest00000000000000000000000000",
        phone_numbers: Iterable[str] = ("+15550100000",),
        sms_sent_after: float | None = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._state = RestState(
            account_sid=account_sid,
            auth_token=auth_token,
            clock=clock,
            sms_sent_after=sms_sent_after,
        )
        self._changes = self._state.changes
        self._routes = RestRoutes(
            self._state,
            call_created=lambda record: self._queue_hooks(self._created_hooks, record),
            call_ended=lambda record: self._queue_hooks(self._ended_hooks, record),
            call_redirected=lambda record, redirect: self._queue_hooks(
                self._redirected_hooks, record, redirect
            ),
        )
        self._created_hooks: list[_CallHook] = []
        self._ended_hooks: list[_CallHook] = []
        self._redirected_hooks: list[_RedirectHook] = []
        self._hook_errors: list[str] = []
        self._hook_queue: queue.SimpleQueue[_QueuedHook | None] = queue.SimpleQueue()
        self._hook_thread = threading.Thread(
            target=self._run_hooks, name="twilio-rest-hooks", daemon=True
        )
        self._server: RestHttpServer | None = None
        self._server_thread: threading.Thread | None = None
        for number in phone_numbers:
            self.seed_phone_number(number)

    @property
    def account_sid(self) -> str:
        return self._state.account_sid

    @property
    def auth_token(self) -> str:
        return self._state.auth_token

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = RestHttpServer(self._routes)
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
        """Stop serving; answers held back by :meth:`set_answer_delay` go out at once."""
        if self._server is not None:
            self._server.stopping.set()
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
            sid=new_sid("PN"),
            account_sid=self.account_sid,
            phone_number=phone_number,
            friendly_name=friendly_name or phone_number,
        )
        with self._changes.lock:
            self._state.numbers[record.sid] = record
        self._changes.notify()
        return record

    def seed_call(
        self,
        sid: str,
        *,
        from_: str,
        to: str,
        direction: str = "inbound",
        status: str = "in-progress",
    ) -> CallRecord:
        """Make known a call the stand-in did not create, such as one a caller placed to TARS.

        Hang-ups and redirects of it then work as for a created call, and it is listed, with
        its ``direction``; it runs no :meth:`on_call_created` hook and does not count for
        :meth:`wait_for_call`. ``status`` is that of a call not ended yet; an in-progress call
        has a ``start_time``. End it with :meth:`set_call_status`.
        """
        if status not in CALL_STATUSES or status in ENDED_STATUSES:
            raise ValueError(f"a seeded call is queued, ringing or in-progress, not {status!r}")
        if direction not in CALL_DIRECTIONS:
            raise ValueError(f"unknown call direction {direction!r}")
        with self._changes.lock:
            if sid in self._state.calls:
                raise ValueError(f"call {sid} is known already")
            now = self._state.now()
            record = CallRecord(
                sid=sid,
                account_sid=self.account_sid,
                to=to,
                from_=from_,
                status=status,
                twiml=None,
                url=None,
                method=None,
                status_callback=None,
                status_callback_events=(),
                status_callback_method=None,
                machine_detection=None,
                async_amd=None,
                time_limit=None,
                answered_by=None,
                created_at=now,
                started_at=now if status == "in-progress" else None,
                direction=direction,
            )
            self._state.calls[sid] = record
            self._state.seeded.add(sid)
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
            failures = self._state.failures.setdefault(operation, deque())
            failures.extend(Failure(status, code, message) for _ in range(times))

    def set_answer_delay(self, operation: Operation | None, seconds: float) -> None:
        """Hold back the answers to ``operation`` (``None``: to every operation) ``seconds``.

        The request is recorded and has its effect (the message or call exists) first; only
        the answer waits, as when Twilio acted but its answer had not arrived yet. A delay set
        for an operation wins over the one for every operation; 0 removes the wait.
        """
        if seconds < 0:
            raise ValueError(f"negative answer delay {seconds}")
        with self._changes.lock:
            self._state.answer_delays[operation] = seconds

    def set_message_status(self, sid: str, status: str) -> MessageRecord:
        """Move a message on as the network would; a first sent status sets its ``date_sent``."""
        if status not in MESSAGE_STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        with self._changes.lock:
            updated = self._state.set_message_status(sid, status)
        self._changes.notify()
        return updated

    def on_call_created(self, hook: _CallHook) -> None:
        """Call ``hook(call)`` after each successful calls.create has been answered.

        Hooks run one at a time, in order, on a thread of their own: they may block (answer
        with a softphone, say) without holding up the REST client.
        """
        self._created_hooks.append(hook)

    def on_call_ended(self, hook: _CallHook) -> None:
        """Call ``hook(call)`` once per call when it reaches an ended status, however it did."""
        self._ended_hooks.append(hook)

    def on_call_redirected(self, hook: _RedirectHook) -> None:
        """Call ``hook(call, redirect)`` after each redirect has been answered.

        ``call`` carries the new ``twiml``/``url``. Twilio ends a call's Media Stream (``stop``)
        when a redirect replaces its ``<Connect><Stream>``; a hook can do the same to the
        softphone's stream.
        """
        self._redirected_hooks.append(hook)

    def set_call_status(
        self, sid: str, status: str, *, answered_by: str | None = None
    ) -> CallRecord:
        """Move a call on as the network would: ringing, in-progress (answered), or ended.

        Ending an ended call again changes nothing; reviving one is an error.
        """
        if status not in CALL_STATUSES:
            raise ValueError(f"unknown call status {status!r}")
        with self._changes.lock:
            record = self._state.calls.get(sid)
            if record is None:
                raise KeyError(f"no call {sid}")
            if record.ended:
                if status in ENDED_STATUSES:
                    return record
                raise ValueError(f"call {sid} already ended ({record.status})")
            updated = self._state.transition(record, status, answered_by=answered_by)
        self._changes.notify()
        if updated.ended and not record.ended:
            self._queue_hooks(self._ended_hooks, updated)
        return updated

    # -- records ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._changes.lock:
            return list(self._state.requests)

    @property
    def calls(self) -> list[CallRecord]:
        """Calls in creation order."""
        with self._changes.lock:
            return list(self._state.calls.values())

    def call(self, sid: str) -> CallRecord:
        with self._changes.lock:
            return self._state.calls[sid]

    @property
    def messages(self) -> list[MessageRecord]:
        """Messages in creation order, with their statuses as of now."""
        with self._changes.lock:
            return list(self._state.settle_messages())

    def message(self, sid: str) -> MessageRecord:
        with self._changes.lock:
            for message in self._state.settle_messages():
                if message.sid == sid:
                    return message
        raise KeyError(f"no message {sid}")

    @property
    def phone_numbers(self) -> list[PhoneNumberRecord]:
        with self._changes.lock:
            return list(self._state.numbers.values())

    @property
    def redirects(self) -> list[RedirectRecord]:
        """Redirects of calls, in the order they took effect."""
        with self._changes.lock:
            return list(self._state.redirects)

    @property
    def dials(self) -> list[DialRecord]:
        """The numbers redirects' ``<Dial>`` verbs dialled, in order."""
        with self._changes.lock:
            return list(self._state.dials)

    @property
    def conference_rooms(self) -> list[str]:
        """Conference rooms in the order of their first join."""
        with self._changes.lock:
            return list(self._state.conferences)

    def conference(self, room: str) -> list[ConferenceJoin]:
        """The calls that joined ``room``, in order; empty for a room nobody joined."""
        with self._changes.lock:
            return list(self._state.conferences.get(room, ()))

    @property
    def hook_errors(self) -> list[str]:
        """Exceptions raised by hooks, as ``repr`` strings; tests should expect none."""
        with self._changes.lock:
            return list(self._hook_errors)

    def requests_for(self, operation: Operation) -> list[RecordedRequest]:
        with self._changes.lock:
            return [request for request in self._state.requests if request.operation is operation]

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
        """Wait until ``count`` calls were created (seeded ones do not count); return the
        ``count``-th."""
        return self._changes.wait_nth(
            self._state.created_calls, count, timeout, f"{count} created call(s)"
        )

    def wait_for_call_status(
        self, sid: str, statuses: str | Sequence[str], timeout: float = 5.0
    ) -> CallRecord:
        wanted = {statuses} if isinstance(statuses, str) else set(statuses)
        self.wait_for(
            lambda s: sid in s._state.calls and s._state.calls[sid].status in wanted,
            timeout,
            f"call {sid} to be {'/'.join(sorted(wanted))}",
        )
        return self.call(sid)

    def wait_for_message(self, count: int = 1, timeout: float = 5.0) -> MessageRecord:
        return self._changes.wait_nth(
            self._state.settle_messages, count, timeout, f"{count} message(s)"
        )

    def wait_for_redirect(self, count: int = 1, timeout: float = 5.0) -> RedirectRecord:
        """Wait until ``count`` redirects took effect; return the ``count``-th."""
        return self._changes.wait_nth(
            lambda: self._state.redirects, count, timeout, f"{count} redirect(s)"
        )

    def wait_for_conference(
        self, room: str, participants: int = 1, timeout: float = 5.0
    ) -> list[ConferenceJoin]:
        """Wait until ``participants`` calls joined ``room``; return its joins so far."""
        self.wait_for(
            lambda s: len(s._state.conferences.get(room, ())) >= participants,
            timeout,
            f"{participants} call(s) in conference {room!r}",
        )
        return self.conference(room)

    # -- hooks --------------------------------------------------------------------------------

    def _queue_hooks(self, hooks: Sequence[Callable[..., object]], *args: object) -> None:
        for hook in hooks:
            self._hook_queue.put(functools.partial(hook, *args))

    def _run_hooks(self) -> None:
        while (hook := self._hook_queue.get()) is not None:
            try:
                hook()
            except Exception as error:  # noqa: BLE001 - a failing hook is recorded for the test
                with self._changes.lock:
                    self._hook_errors.append(repr(error))
                self._changes.notify()
