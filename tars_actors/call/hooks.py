"""The server's view of the call system (:class:`CallHooks`): at a signed voice webhook, a
place for the call, its record and one-time stream token; stream starts and status callbacks
passed to the :class:`~actors.call_supervisor.CallSupervisor`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pykka
import structlog

from tars_actors.actor_messages import CallStatusChanged, CallStreamStarted, EndWithNotice
from tars_actors.call.admission import CallAdmission, Refusal
from tars_actors.call.owner_pin import Standing
from tars_actors.call.pin_desk import PinDesk
from tars_actors.call.records import owner_check
from tars_actors.runtime.settings import Settings
from tars_actors.store import Store
from tars_actors.telephony import stream_tokens
from tars_actors.telephony.hooks import Admission, Connect, Draining, OverCapacity
from tars_actors.telephony.stream_tokens import (
    STREAM_TOKEN_SECONDS,
    TOKEN_PARAMETER,
    CallRecord,
)

__all__ = ["FINAL_STATUSES", "CallAdmitted", "CallHooks"]

log = structlog.get_logger("tars.calls")

#: Twilio's final call statuses: a status callback with one of these ends the session.
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

#: What a call from the owner's number still to type the PIN hears when the proven owner
#: needs its place (the owner is on one phone at a time).
_EVICTED_NOTICE = "Sorry, this line is needed for another call now. Goodbye."

#: What a caller over their own limits hears (the whole-line case is OverCapacity's own).
_CALLER_LIMIT_APOLOGY = (
    "Sorry, I cannot take another call from this number right now. Please try again later."
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CallAdmitted:
    """CallHooks → CallSupervisor: a signed voice webhook was answered with a stream (its
    token recorded with ``record``): the call's session may start before the stream."""

    record: CallRecord


class CallHooks:
    """The server's view of the call system (implements ``server.ServerHooks``)."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        admission: CallAdmission,
        call_supervisor: Callable[[], pykka.ActorRef[Any] | None],
        ready: Callable[[], bool],
        *,
        store: Store,
        pins: PinDesk,
        serving_peers: Callable[[], int] = lambda: 0,
    ) -> None:
        """``settings`` returns the current settings (a SIGHUP may change the language);
        ``serving_peers`` counts the other daemons serving on the same database."""
        self._settings = settings
        self._admission = admission
        self._call_supervisor = call_supervisor
        self._ready = ready
        self._store = store
        self._pins = pins
        self._serving_peers = serving_peers

    def admit_call(self, params: Mapping[str, str]) -> Admission:
        """On the server's worker thread: a place, then the call's record and its token."""
        settings = self._settings()
        language = settings.assistant.language
        if self._admission.draining:
            return Draining(language=language, elsewhere=self._serving_peers() > 0)
        call_sid = params.get("CallSid", "")
        record = CallRecord(
            call_sid=call_sid,
            account_sid=params.get("AccountSid", ""),
            from_number=params.get("From", ""),
            to_number=params.get("To", ""),
            direction=params.get("Direction", "") or "inbound",
            stir_verstat=params.get("StirVerstat") or None,
        )
        number = record.caller_number
        standing = owner_check(settings, record, self._pins).standing
        refusal = self._admission.reserve(
            call_sid,
            number,
            owner=standing in {Standing.PROVEN, Standing.PIN_PENDING},
            proven=standing is Standing.PROVEN,
        )
        for evicted in self._admission.take_evicted():
            self._tell(
                EndWithNotice(
                    call_sid=evicted, text=_EVICTED_NOTICE, reason="place taken by the owner"
                )
            )
        if refusal is not None:
            if refusal is Refusal.OVER_CAPACITY:
                return OverCapacity(language=language)
            return OverCapacity(apology=_CALLER_LIMIT_APOLOGY, language=language, why=refusal)
        try:
            with self._store.connection():
                token = stream_tokens.issue(self._store, record, seconds=STREAM_TOKEN_SECONDS)
        except Exception:
            self._admission.cancel_reservation(call_sid)
            raise
        # The model connects and greets while Twilio opens the stream (about a second).
        self._tell(CallAdmitted(record=record))
        return Connect(parameters={TOKEN_PARAMETER: token})

    def stream_started(self, message: CallStreamStarted) -> None:
        self._tell(message)

    def status_changed(self, message: CallStatusChanged) -> None:
        if message.status in FINAL_STATUSES:
            # At once, on the server's loop: the next webhook may already be waiting.
            self._admission.ended(message.call_sid)
        self._tell(message)

    def stream_elsewhere(self, call_sid: str) -> bool:
        admission = self._admission
        return admission.draining and not admission.holds(call_sid) and self._serving_peers() > 0

    def health(self) -> Mapping[str, Any]:
        ready = self._ready()
        return {"ready": ready, "sessions": self._admission.live}

    def _tell(self, message: object) -> None:
        ref = self._call_supervisor()
        if ref is None:
            log.warning("calls.not_running", message=type(message).__name__)
            return
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            log.warning("calls.not_running", message=type(message).__name__)
