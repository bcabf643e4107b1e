"""The Telephony actor: every blocking Twilio REST request (hang-ups, spoken goodbyes, SMS),
run on a small thread pool of its own so that no call actor ever waits on HTTP.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import pykka
import structlog
from twilio.rest import Client

from tars_actors.actor_messages import (
    CallFailed,
    CallPlaced,
    HangUp,
    PlaceCall,
    SayAndHangUp,
    SendSms,
    SmsFailed,
    SmsSent,
)
from tars_actors.runtime.actor import TarsActor
from tars_actors.runtime.settings import Settings
from tars_actors.telephony.rest import (
    describe_error,
    error_code,
    is_already_ended,
    is_transient,
    make_client,
    outbound_call_options,
)
from tars_actors.telephony.twiml import goodbye_twiml

__all__ = ["RetryPolicy", "Telephony", "TelephonyRequest"]

log = structlog.get_logger("tars.telephony")

T = TypeVar("T")

TelephonyRequest = HangUp | SayAndHangUp | SendSms | PlaceCall

#: Twilio's "Call is not in-progress. Cannot redirect.": the call was still ringing.
_NOT_IN_PROGRESS_CODE = 21220


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Bounded retries of transient failures, with exponential backoff."""

    attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError(
                f"need 0 <= initial_delay <= max_delay, got {self.initial_delay}, {self.max_delay}"
            )

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt."""
        return float(min(self.max_delay, self.initial_delay * 2 ** (failures - 1)))


@dataclass(frozen=True, slots=True)
class _Done(Generic[T]):
    value: T
    attempts: int


@dataclass(frozen=True, slots=True)
class _Failed:
    """The last error of a request that will not be retried (any more)."""

    error: Exception
    attempts: int

    def __str__(self) -> str:
        return describe_error(self.error)


class Telephony(TarsActor):
    """Carries out :class:`~tars_actors.actor_messages.HangUp`,
    :class:`~tars_actors.actor_messages.SayAndHangUp` and
    :class:`~tars_actors.actor_messages.SendSms`.

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
    ) -> None:
        super().__init__()
        self._settings = settings
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
        log.info("telephony.started", workers=self._max_workers)

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
            case HangUp() | SayAndHangUp() | SendSms() | PlaceCall():
                self._submit(message)
                return None
            case _:
                return super().on_receive(message)

    def _submit(self, request: TelephonyRequest) -> None:
        assert self._pool is not None
        # Worker lines carry this actor's log context; one copy per job, because a
        # context can be entered by one thread at a time.
        context = contextvars.copy_context()
        with self._jobs_lock:
            future = self._pool.submit(context.run, self._perform, request)
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
        pool.shutdown(wait=False, cancel_futures=True)
        for future, request in jobs.items():
            if future.cancelled():
                log.warning("telephony.request_dropped", request=_describe_request(request))
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

    def _perform(self, request: TelephonyRequest) -> None:
        try:
            match request:
                case HangUp():
                    self._hang_up(request)
                case SayAndHangUp():
                    self._say_and_hang_up(request)
                case SendSms():
                    self._send_sms(request)
                case PlaceCall():
                    self._place_call(request)
        except Exception:
            # A bug here must not vanish into an unread future.
            log.exception("telephony.request_crashed", request=_describe_request(request))

    def _hang_up(self, request: HangUp) -> None:
        sid = request.call_sid
        outcome = self._retrying(
            lambda client: client.calls(sid).update(status="completed"), idempotent=True
        )
        match outcome:
            case _Done(value=call, attempts=attempts):
                log.info(
                    "telephony.hung_up",
                    call_sid=sid,
                    reason=request.reason,
                    status=call.status,
                    attempts=attempts,
                )
            case _Failed(error=error) if is_already_ended(error):
                log.info("telephony.hang_up_already_ended", call_sid=sid, reason=request.reason)
            case _Failed(attempts=attempts):
                log.error(
                    "telephony.hang_up_failed",
                    call_sid=sid,
                    reason=request.reason,
                    attempts=attempts,
                    error=str(outcome),
                )

    def _say_and_hang_up(self, request: SayAndHangUp) -> None:
        sid = request.call_sid
        twiml = goodbye_twiml(request.text, request.language)
        outcome = self._retrying(
            lambda client: client.calls(sid).update(twiml=twiml), idempotent=True
        )
        match outcome:
            case _Done(attempts=attempts):
                log.info("telephony.said_and_hanging_up", call_sid=sid, attempts=attempts)
            case _Failed(error=error) if is_already_ended(error):
                log.info("telephony.say_and_hang_up_already_ended", call_sid=sid)
            case _Failed(error=error) if error_code(error) == _NOT_IN_PROGRESS_CODE:
                # Nobody could hear it yet; ending the call is what is left to do.
                log.info("telephony.say_skipped_not_answered", call_sid=sid)
                self._hang_up(HangUp(call_sid=sid, reason="say_and_hang_up"))
            case _Failed(attempts=attempts):
                log.error(
                    "telephony.say_and_hang_up_failed",
                    call_sid=sid,
                    attempts=attempts,
                    error=str(outcome),
                )

    def _send_sms(self, request: SendSms) -> None:
        sender = self._settings.twilio.phone_number
        if not sender:
            self._sms_failed(request, "[twilio] phone_number is not set", code=None, attempts=0)
            return
        outcome = self._retrying(
            lambda client: client.messages.create(from_=sender, to=request.to, body=request.body),
            idempotent=False,
        )
        match outcome:
            case _Done(value=message, attempts=attempts):
                sid = str(message.sid)
                log.info(
                    "telephony.sms_sent",
                    to=request.to,
                    chars=len(request.body),
                    message_sid=sid,
                    correlation_id=request.correlation_id,
                    attempts=attempts,
                )
                _reply(request, SmsSent(correlation_id=request.correlation_id, message_sid=sid))
            case _Failed(error=error, attempts=attempts):
                self._sms_failed(request, str(outcome), code=error_code(error), attempts=attempts)

    def _sms_failed(self, request: SendSms, error: str, *, code: int | None, attempts: int) -> None:
        log.error(
            "telephony.sms_failed",
            to=request.to,
            correlation_id=request.correlation_id,
            attempts=attempts,
            error=error,
        )
        _reply(request, SmsFailed(correlation_id=request.correlation_id, error=error, code=code))

    def _place_call(self, request: PlaceCall) -> None:
        sender = self._settings.twilio.phone_number
        if not sender:
            self._call_failed(request, "[twilio] phone_number is not set", code=None, attempts=0)
            return
        options = outbound_call_options(
            to=request.to,
            from_=sender,
            twiml=request.twiml,
            status_callback=request.status_callback,
            detect_machine=request.detect_machine,
            time_limit_seconds=request.time_limit_seconds,
        )
        # Not idempotent: a retry after an ambiguous failure could ring the callee twice.
        outcome = self._retrying(lambda client: client.calls.create(**options), idempotent=False)
        match outcome:
            case _Done(value=call, attempts=attempts):
                sid = str(call.sid)
                log.info(
                    "telephony.call_placed",
                    to=request.to,
                    call_sid=sid,
                    correlation_id=request.correlation_id,
                    attempts=attempts,
                )
                _reply(request, CallPlaced(correlation_id=request.correlation_id, call_sid=sid))
            case _Failed(error=error, attempts=attempts):
                self._call_failed(request, str(outcome), code=error_code(error), attempts=attempts)

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
        _reply(request, CallFailed(correlation_id=request.correlation_id, error=error, code=code))

    def _retrying(self, call: Callable[[Client], T], *, idempotent: bool) -> _Done[T] | _Failed:
        """Run ``call`` until it succeeds, fails for good, or the attempts are used up."""
        client = self._client
        if client is None:
            return _Failed(error=ValueError("Twilio credentials are not set"), attempts=0)
        retry = self._retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return _Done(value=call(client), attempts=attempt)
            except Exception as error:  # noqa: BLE001 (every failure is an outcome to report)
                last = attempt >= retry.attempts or self._stopping.is_set()
                if last or not is_transient(error, idempotent=idempotent):
                    return _Failed(error=error, attempts=attempt)
                delay = retry.delay(attempt)
                log.warning(
                    "telephony.retrying",
                    attempt=attempt,
                    delay_seconds=delay,
                    error=describe_error(error),
                )
                if self._stopping.wait(delay):
                    return _Failed(error=error, attempts=attempt)


def _reply(
    request: SendSms | PlaceCall, message: SmsSent | SmsFailed | CallPlaced | CallFailed
) -> None:
    reply_to = request.reply_to
    # A function is a lookup: the reply goes to whichever actor holds the role now (a
    # restarted requester is a new actor, and its outcome must still be recorded).
    direct = isinstance(reply_to, pykka.ActorRef) or reply_to is None
    target = reply_to if direct else reply_to()
    if target is None:
        log.info("telephony.reply_undelivered", correlation_id=request.correlation_id)
        return
    try:
        target.tell(message)
    except pykka.ActorDeadError:
        log.info("telephony.reply_undelivered", correlation_id=request.correlation_id)


def _describe_request(request: TelephonyRequest) -> str:
    match request:
        case HangUp(call_sid=sid):
            return f"hang up {sid}"
        case SayAndHangUp(call_sid=sid):
            return f"say and hang up {sid}"
        case SendSms(to=to, correlation_id=correlation_id):
            return f"sms to {to} ({correlation_id or 'no id'})"
        case PlaceCall(to=to, correlation_id=correlation_id):
            return f"call to {to} ({correlation_id or 'no id'})"
