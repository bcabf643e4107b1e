"""The Telephony actor: every blocking Twilio REST request (hang-ups, spoken goodbyes,
redirects, SMS, outbound calls), run on a small thread pool of its own so that no call
actor ever waits on HTTP.

With a store, every request is an intent (:mod:`tars_actors.telephony.intents`) written before
it is sent and settled after: asked again (after a restart, by a Router or a scheduler that
never heard the outcome), a request Twilio has is answered from the record, and one whose
outcome is unknown is looked up in Twilio's lists before it is sent again. At start, and on
:class:`~tars_actors.cluster.messages.TakeUp` (a member is gone), the intents a dead daemon
left unsure are looked up (and sent if Twilio never got them).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

import pykka
import structlog
from twilio.rest import Client

from tars_actors.actor_messages import (
    CallFailed,
    CallPlaced,
    CallRedirected,
    HangUp,
    PlaceCall,
    Redirect,
    RedirectFailed,
    SayAndHangUp,
    SendSms,
    SmsFailed,
    SmsSent,
)
from tars_actors.cluster.messages import TakeUp
from tars_actors.runtime.actor import TarsActor
from tars_actors.runtime.settings import Settings
from tars_actors.store import Store, utcnow
from tars_actors.telephony import call_updates, intents
from tars_actors.telephony.intents import (
    Go,
    IntentBook,
    IntentKind,
    IntentRecord,
    Known,
    TelephonyRequest,
    Unsure,
    describe_request,
    intent_key,
    payload_of,
    reply,
    request_of,
)
from tars_actors.telephony.outbox import Outbox
from tars_actors.telephony.rest import (
    Done,
    Failed,
    RetryPolicy,
    describe_error,
    error_code,
    is_already_ended,
    is_transient,
    make_client,
    may_have_acted,
    outbound_call_options,
)

__all__ = ["RetryPolicy", "Telephony", "TelephonyRequest"]

T = TypeVar("T")

log = structlog.get_logger("tars.telephony")

_UNSURE_REDIRECT = "its outcome is unknown (TARS stopped on the way); a redirect is not repeated"


class Telephony(TarsActor):
    """Carries out :class:`~tars_actors.actor_messages.HangUp`,
    :class:`~tars_actors.actor_messages.SayAndHangUp`,
    :class:`~tars_actors.actor_messages.Redirect`,
    :class:`~tars_actors.actor_messages.SendSms` and
    :class:`~tars_actors.actor_messages.PlaceCall`.

    Each request runs on the actor's thread pool (``max_workers`` at once), so one slow
    request does not hold up a hang-up; outcomes are logged once each and SMS results are
    told to ``reply_to``. Without Twilio credentials the actor still starts (the demo and
    local runs have none) and every request fails with a clear log line.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: Client | None = None,
        max_workers: int = 4,
        retry: RetryPolicy | None = None,
        stop_grace_seconds: float = 3.0,
        store: Store | None = None,
        recheck: RetryPolicy | None = None,
        in_transit: timedelta = intents.IN_TRANSIT,
        outbox: Outbox | None = None,
    ) -> None:
        """``store``: where the intents are kept (without one, requests are sent as asked,
        at most once each, but nothing survives a restart). ``recheck``: the backoff for
        looking up an intent whose outcome is unknown while Twilio cannot be asked.
        ``in_transit``: how long a request this run started may yet be answered. ``outbox``:
        the runtime's, so that a Telephony started in a crashed one's place takes over."""
        super().__init__()
        self._settings = settings
        self._book = None if store is None else IntentBook(store)
        self._recheck = recheck or RetryPolicy(attempts=1, initial_delay=1.0, max_delay=300.0)
        self._transit = in_transit
        self._outbox = outbox or Outbox()
        self._gate = self._outbox.gate
        self._timers: set[threading.Timer] = set()
        self._client = client
        self._max_workers = max_workers
        self._retry = retry or RetryPolicy()
        self._stop_grace = stop_grace_seconds
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Set on stop: backoff waits end at once and nothing new is retried.
        self._stopping = threading.Event()
        self._jobs_lock = threading.Lock()
        self._jobs: dict[concurrent.futures.Future[None], TelephonyRequest] = {}

    # -- lifecycle (actor thread) ---------------------------------------------------------

    def on_start(self) -> None:
        if self._client is None:
            try:
                self._client = make_client(self._settings)
            except ValueError as error:
                log.warning("telephony.no_credentials", problem=str(error))
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="telephony"
        )
        for key in self._outbox.paused():  # a crashed predecessor's, mid-recheck
            self.actor_ref.tell(_Recheck(key=key, failures=1))
        log.info("telephony.started", workers=self._max_workers, unsure_intents=self._take_up())

    def _take_up(self) -> int:
        """Look up the intents left unsure by a daemon that is gone (or by this one's crashed
        Telephony): an SMS Twilio lacks is sent; a call only settled if Twilio has it (see
        intents.recover_calls). Several daemons may take one up at once: each looks, and
        the attempt that sends again is claimed by one (``IntentBook.again``). How many."""
        assert self._pool is not None
        unsure = [i for i in self._unsure() if i.key not in self._outbox]
        for intent in unsure:
            if intent.kind is not IntentKind.CALL:
                self._submit(request_of(intent))
        calls = [i for i in unsure if i.kind is IntentKind.CALL]
        if calls and self._book is not None and self._client is not None:
            recover = functools.partial(intents.recover_calls, gate=self._gate)
            self._pool.submit(
                contextvars.copy_context().run, recover, self._client, self._book, calls
            )
        return len(unsure)

    def _unsure(self) -> list[IntentRecord]:
        book = self._book
        if book is None:
            return []
        try:
            book.forget_settled()
            return book.unsure()
        except Exception:  # the database is down: requests still go out, unrecorded
            log.exception("telephony.intents_unreadable")
            return []

    def on_stop(self) -> None:
        self._shut_down_pool()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._shut_down_pool()

    def on_receive(self, message: Any) -> Any:
        match message:
            case HangUp() | SayAndHangUp() | Redirect() | SendSms() | PlaceCall():
                self._submit(message)
                return None
            case TakeUp(reason=reason) if self._pool is not None:
                log.info("telephony.taking_up", reason=reason, unsure_intents=self._take_up())
                return None
            case _Recheck(key=key, failures=failures):
                request = self._outbox.resume(key) if self._pool is not None else None
                if request is not None:
                    self._run(request, failures)
                return None
            case _:
                return super().on_receive(message)

    def _submit(self, request: TelephonyRequest) -> None:
        if isinstance(request, SendSms | PlaceCall) and not request.correlation_id:
            # Asked for once and never again (send_sms): its own intent all the same.
            request = dataclasses.replace(request, correlation_id=f"once-{uuid.uuid4().hex}")
        if self._outbox.join(intent_key(request), request):
            self._run(request, 0)
        else:
            log.info("telephony.request_joined", request=describe_request(request))

    def _run(self, request: TelephonyRequest, failures: int) -> None:
        assert self._pool is not None
        # Worker lines carry this actor's log context; one copy per job, because a
        # context can be entered by one thread at a time.
        context = contextvars.copy_context()
        with self._jobs_lock:
            future = self._pool.submit(context.run, self._perform, request, failures)
            self._jobs[future] = request
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[None]) -> None:
        with self._jobs_lock:
            self._jobs.pop(future, None)

    def _shut_down_pool(self) -> None:
        pool = self._pool
        if pool is None:
            return
        self._pool = None
        self._stopping.set()
        with self._jobs_lock:
            jobs = dict(self._jobs)
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()  # the intents stay unsure: the next start looks them up
        pool.shutdown(wait=False, cancel_futures=True)
        for future, request in jobs.items():
            if future.cancelled():
                # Left for the Telephony started in this one's place (or the next start).
                self._outbox.pause(intent_key(request))
                log.warning("telephony.request_left", request=describe_request(request))
        running = [future for future in jobs if not future.cancelled()]
        _, still_running = concurrent.futures.wait(running, timeout=self._stop_grace)
        if still_running:
            log.error(
                "telephony.requests_abandoned",
                count=len(still_running),
                grace_seconds=self._stop_grace,
            )
        log.info("telephony.stopped")

    # -- requests (pool threads) -----------------------------------------------------------

    def _perform(self, request: TelephonyRequest, failures: int) -> None:
        try:
            match request:
                case HangUp() | SayAndHangUp() | Redirect():
                    # Finished once, here: a request asked again meanwhile is its own job.
                    self._finished(request, self._idempotent(request))
                case SendSms():
                    self._send_sms(request, failures)
                case PlaceCall():
                    self._place_call(request, failures)
        except Exception as error:
            # A bug or the database: never an unread future. What it was doing is looked
            # up again later rather than given up on (a hang-up is simply done again).
            log.exception("telephony.request_crashed", request=describe_request(request))
            self._recheck_later(intent_key(request), failures + 1, error)

    def _waiting(self, key: str) -> list[TelephonyRequest]:
        """The requests for ``key`` (the first and any that joined it), now finished."""
        return self._outbox.done(key)

    def _recheck_later(
        self, key: str, failures: int, error: BaseException | str, *, delay: float | None = None
    ) -> None:
        """The outcome is unknown and Twilio cannot be asked now: ask again after a backoff,
        for as long as it takes (never dropped, never sent blindly)."""
        if delay is None:
            delay = self._recheck.delay(failures)
        self._outbox.pause(key)
        log.warning(
            "telephony.outcome_unknown",
            key=key,
            checks=failures,
            retry_in_seconds=round(delay, 3),
            error=error if isinstance(error, str) else describe_error(error),
        )
        if self._stopping.is_set():
            return  # unsure in the store: the next start looks it up
        ref = self.actor_ref

        def recheck() -> None:
            with self._jobs_lock:
                self._timers.discard(timer)
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(_Recheck(key=key, failures=failures))

        timer = threading.Timer(delay, recheck)
        timer.daemon = True
        with self._jobs_lock:
            self._timers.add(timer)
        timer.start()

    def _once(
        self,
        request: SendSms | PlaceCall,
        kind: IntentKind,
        *,
        sender: str,
        payload: dict[str, Any],
        send: Callable[[Client], Any],
        failures: int,
    ) -> Done[str] | Failed | None:
        """Send a costly request once: its intent first, Twilio's records before any resend.

        None: the outcome is unknown, and a recheck is scheduled.
        """
        book = self._book
        if book is None:
            sent = self._retrying(send, idempotent=False)
            return Done(str(sent.value.sid), sent.attempts) if isinstance(sent, Done) else sent
        if self._client is None:
            return Failed(error=ValueError("Twilio credentials are not set"), attempts=0)
        key = intent_key(request)
        claim = book.claim(
            key=key, kind=kind, to_number=request.to, from_number=sender, request=payload
        )
        intent: IntentRecord = claim.intent
        if isinstance(claim, Known):
            log.info("telephony.already_sent", key=key, sid=claim.sid)
            return Done(claim.sid, 0)
        if isinstance(claim, Unsure) and (wait := intent.in_transit(utcnow(), self._transit)) > 0:
            # Started by this run (a Telephony that crashed mid-request): its request may
            # still be answered. Looked up once it no longer can be.
            self._recheck_later(key, failures, "a request may still be on its way", delay=wait)
            return None
        if isinstance(claim, Unsure):
            find = intents.find_message if kind is IntentKind.SMS else intents.find_call
            try:
                with self._gate.looking():
                    # Settled meanwhile (the lookup at start found it)? Else ask Twilio.
                    found = book.sent_sid(intent) or find(
                        self._client, intent, book.known_sids(kind, near=intent)
                    )
                    if found is not None:
                        book.sent(intent, found)
            except Exception as error:  # noqa: BLE001 (Twilio cannot be asked: ask later)
                self._recheck_later(key, failures + 1, error)
                return None
            if found is not None:
                log.info("telephony.found_at_twilio", key=key, sid=found, attempts=intent.attempts)
                return Done(found, 0)
            log.info("telephony.not_at_twilio", key=key, attempts=intent.attempts)
            again = book.again(intent, payload)
            if again is None:  # another request took it up meanwhile: ask the record again
                return self._once(
                    request, kind, sender=sender, payload=payload, send=send, failures=failures
                )
            intent = again
        with self._gate.sending():  # settled before any lookup can see its record
            outcome = self._retrying(send, idempotent=False)
            if isinstance(outcome, Done):
                sid = str(outcome.value.sid)
                book.sent(intent, sid)
                return Done(sid, outcome.attempts)
        if may_have_acted(outcome.error):
            # Twilio may have it (a 500, a lost answer): look before sending again.
            self._recheck_later(key, failures + 1, outcome.error)
            return None
        book.failed(intent, str(outcome))
        return outcome

    def _idempotent(self, request: HangUp | SayAndHangUp | Redirect) -> Done[None] | Failed | None:
        """A hang-up or a redirect, recorded like the rest; done again after a restart
        (both are harmless to repeat), skipped once done (None)."""
        book = self._book
        if book is None:
            return self._carry_out(request)
        kind = IntentKind.HANG_UP if isinstance(request, HangUp) else IntentKind.REDIRECT
        key = intent_key(request)
        call = payload_of(request)
        try:
            # A call SID (34 characters) is in the key and the request, not in to_number.
            claim = book.claim(key=key, kind=kind, to_number="", from_number="", request=call)
            if isinstance(claim, Known):
                log.info("telephony.already_done", key=key)
                return None
            if isinstance(claim, Unsure) and isinstance(request, Redirect):
                # Twilio may have acted on it: run twice, a leg would leave its room.
                log.warning("telephony.redirect_not_repeated", key=key)
                book.failed(claim.intent, _UNSURE_REDIRECT)
                return Failed(error=RuntimeError(_UNSURE_REDIRECT), attempts=0)
            intent = claim.intent if isinstance(claim, Go) else book.again(claim.intent, call)
        except Exception:  # the database: a hang-up still goes out, unrecorded
            log.exception("telephony.intent_unrecorded", key=key)
            return self._carry_out(request)
        outcome = self._carry_out(request)
        if intent is not None and isinstance(outcome, Done):
            book.sent(intent, request.call_sid)
        elif intent is not None:
            book.failed(intent, str(outcome))
        return outcome

    def _carry_out(self, request: HangUp | SayAndHangUp | Redirect) -> Done[None] | Failed:
        match request:
            case HangUp():
                done = call_updates.hang_up(self._retrying, request)
            case SayAndHangUp():
                done = call_updates.say_and_hang_up(self._retrying, request)
            case Redirect():
                return call_updates.redirect(self._retrying, request)
        if done:
            return Done(value=None, attempts=1)
        return Failed(error=RuntimeError("see the log line before"), attempts=1)

    def _finished(
        self, request: HangUp | SayAndHangUp | Redirect, outcome: Done[None] | Failed | None
    ) -> None:
        if isinstance(request, Redirect):
            self._redirect_outcome(request, outcome)
        else:
            self._waiting(intent_key(request))

    def _redirect_outcome(self, request: Redirect, outcome: Done[None] | Failed | None) -> None:
        """Reply to every requester of the redirect (None: it was done before)."""
        for each in self._waiting(intent_key(request)):
            assert isinstance(each, Redirect)
            if isinstance(outcome, Failed):
                message: CallRedirected | RedirectFailed = RedirectFailed(
                    correlation_id=each.correlation_id,
                    call_sid=each.call_sid,
                    error=str(outcome),
                    ended=is_already_ended(outcome.error)
                    or error_code(outcome.error) == call_updates.NOT_IN_PROGRESS_CODE,
                )
            else:
                message = CallRedirected(correlation_id=each.correlation_id, call_sid=each.call_sid)
            reply(each, message)

    def _send_sms(self, request: SendSms, failures: int) -> bool:
        """False while the outcome is unknown (a recheck is scheduled)."""
        sender = self._settings.twilio.phone_number
        if not sender:
            self._sms_failed(request, "[twilio] phone_number is not set", code=None, attempts=0)
            return True
        outcome = self._once(
            request,
            IntentKind.SMS,
            sender=sender,
            payload={"body": request.body, "correlation_id": request.correlation_id},
            send=lambda client: client.messages.create(
                from_=sender, to=request.to, body=request.body
            ),
            failures=failures,
        )
        match outcome:
            case None:
                return False
            case Done(value=sid, attempts=attempts):
                log.info(
                    "telephony.sms_sent",
                    to=request.to,
                    chars=len(request.body),
                    message_sid=sid,
                    correlation_id=request.correlation_id,
                    attempts=attempts,
                )
                for each in self._waiting(intent_key(request)):
                    assert isinstance(each, SendSms)
                    reply(each, SmsSent(correlation_id=each.correlation_id, message_sid=sid))
            case Failed(error=error, attempts=attempts):
                self._sms_failed(request, str(outcome), code=error_code(error), attempts=attempts)
        return True

    def _sms_failed(self, request: SendSms, error: str, *, code: int | None, attempts: int) -> None:
        log.error(
            "telephony.sms_failed",
            to=request.to,
            correlation_id=request.correlation_id,
            attempts=attempts,
            error=error,
        )
        for each in self._waiting(intent_key(request)) or [request]:
            assert isinstance(each, SendSms)
            reply(each, SmsFailed(correlation_id=each.correlation_id, error=error, code=code))

    def _place_call(self, request: PlaceCall, failures: int) -> bool:
        """False while the outcome is unknown (a recheck is scheduled)."""
        sender = self._settings.twilio.phone_number
        if not sender:
            self._call_failed(request, "[twilio] phone_number is not set", code=None, attempts=0)
            return True
        options = outbound_call_options(
            to=request.to,
            from_=sender,
            twiml=request.twiml,
            status_callback=request.status_callback,
            detect_machine=request.detect_machine,
            time_limit_seconds=request.time_limit_seconds,
            ring_seconds=request.ring_seconds,
        )
        payload = {
            "twiml": request.twiml,
            "status_callback": request.status_callback,
            "detect_machine": request.detect_machine,
            "time_limit_seconds": request.time_limit_seconds,
            "ring_seconds": request.ring_seconds,
            "correlation_id": request.correlation_id,
        }
        # Not idempotent: sent again only once Twilio's calls list says it has no such call.
        outcome = self._once(
            request,
            IntentKind.CALL,
            sender=sender,
            payload=payload,
            send=lambda client: client.calls.create(**options),
            failures=failures,
        )
        match outcome:
            case None:
                return False
            case Done(value=sid, attempts=attempts):
                log.info(
                    "telephony.call_placed",
                    to=request.to,
                    call_sid=sid,
                    correlation_id=request.correlation_id,
                    attempts=attempts,
                )
                for each in self._waiting(intent_key(request)):
                    assert isinstance(each, PlaceCall)
                    reply(each, CallPlaced(correlation_id=each.correlation_id, call_sid=sid))
            case Failed(error=error, attempts=attempts):
                self._call_failed(request, str(outcome), code=error_code(error), attempts=attempts)
        return True

    def _call_failed(
        self, request: PlaceCall, error: str, *, code: int | None, attempts: int
    ) -> None:
        log.error(
            "telephony.call_failed",
            to=request.to,
            correlation_id=request.correlation_id,
            attempts=attempts,
            error=error,
        )
        for each in self._waiting(intent_key(request)) or [request]:
            assert isinstance(each, PlaceCall)
            reply(each, CallFailed(correlation_id=each.correlation_id, error=error, code=code))

    def _retrying(self, call: Callable[[Client], T], *, idempotent: bool) -> Done[T] | Failed:
        """Run ``call`` until it succeeds, fails for good, or the attempts are used up."""
        client = self._client
        if client is None:
            return Failed(error=ValueError("Twilio credentials are not set"), attempts=0)
        retry = self._retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return Done(value=call(client), attempts=attempt)
            except Exception as error:  # noqa: BLE001 (every failure is an outcome to report)
                last = attempt >= retry.attempts or self._stopping.is_set()
                if last or not is_transient(error, idempotent=idempotent):
                    return Failed(error=error, attempts=attempt)
                delay = retry.delay(attempt)
                log.warning(
                    "telephony.retrying",
                    attempt=attempt,
                    delay_seconds=delay,
                    error=describe_error(error),
                )
                if self._stopping.wait(delay):
                    return Failed(error=error, attempts=attempt)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Recheck:
    """Timer → Telephony: look up (or send) the intent ``key`` again."""

    key: str
    failures: int
