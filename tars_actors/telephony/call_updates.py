"""Changing a live call through Twilio REST: hanging it up, having Twilio say a line and
hang up, or redirecting it to new TwiML (a ``<Conference>``, a ``<Dial>``). All three are
``calls(sid).update``. A hang-up and a spoken goodbye are safe to repeat, so they are
retried freely and done again after a restart; a redirect into a room is not (done twice,
the leg would leave the room and come back), so it is retried only when Twilio surely did
not act, and never repeated when its outcome is unknown.

Each function takes ``retrying``: the Telephony's bounded retry of one REST request, and
returns whether the call is as asked (a call that already ended counts as hung up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

import structlog
from twilio.rest import Client

from tars_actors.actor_messages import HangUp, Redirect, SayAndHangUp
from tars_actors.telephony.rest import Done, Failed, error_code, is_already_ended
from tars_actors.telephony.twiml import goodbye_twiml

__all__ = ["Retrying", "hang_up", "redirect", "say_and_hang_up"]

log = structlog.get_logger("tars.telephony")

#: Twilio's "Call is not in-progress. Cannot redirect.": the call was still ringing.
NOT_IN_PROGRESS_CODE: Final = 21220


class Retrying(Protocol):
    def __call__(
        self, call: Callable[[Client], Any], *, idempotent: bool
    ) -> Done[Any] | Failed: ...


def hang_up(retrying: Retrying, request: HangUp) -> bool:
    sid = request.call_sid
    outcome = retrying(lambda client: client.calls(sid).update(status="completed"), idempotent=True)
    match outcome:
        case Done(value=call, attempts=attempts):
            log.info(
                "telephony.hung_up",
                call_sid=sid,
                reason=request.reason,
                status=call.status,
                attempts=attempts,
            )
        case Failed(error=error) if is_already_ended(error):
            log.info("telephony.hang_up_already_ended", call_sid=sid, reason=request.reason)
        case Failed(attempts=attempts):
            log.error(
                "telephony.hang_up_failed",
                call_sid=sid,
                reason=request.reason,
                attempts=attempts,
                error=str(outcome),
            )
            return False
    return True


def say_and_hang_up(retrying: Retrying, request: SayAndHangUp) -> bool:
    sid = request.call_sid
    twiml = goodbye_twiml(request.text, request.language)
    outcome = retrying(lambda client: client.calls(sid).update(twiml=twiml), idempotent=True)
    match outcome:
        case Done(attempts=attempts):
            log.info("telephony.said_and_hanging_up", call_sid=sid, attempts=attempts)
        case Failed(error=error) if is_already_ended(error):
            log.info("telephony.say_and_hang_up_already_ended", call_sid=sid)
        case Failed(error=error) if error_code(error) == NOT_IN_PROGRESS_CODE:
            # Nobody could hear it yet; ending the call is what is left to do.
            log.info("telephony.say_skipped_not_answered", call_sid=sid)
            return hang_up(retrying, HangUp(call_sid=sid, reason="say_and_hang_up"))
        case Failed(attempts=attempts):
            log.error(
                "telephony.say_and_hang_up_failed",
                call_sid=sid,
                attempts=attempts,
                error=str(outcome),
            )
            return False
    return True


def redirect(retrying: Retrying, request: Redirect) -> Done[None] | Failed:
    """The call now runs ``request.twiml`` (Done), or why not (Failed; a call that is over
    or not answered yet is :func:`~tars_actors.telephony.rest.is_already_ended` or has
    code 21220)."""
    sid = request.call_sid
    options: dict[str, Any] = {"twiml": request.twiml}
    if request.time_limit_seconds is not None:
        options["time_limit"] = request.time_limit_seconds
    # Not retried when Twilio may have acted: run twice, a leg in a conference room would
    # leave it and come back, and a room that ends when a leg leaves would end.
    outcome = retrying(lambda client: client.calls(sid).update(**options), idempotent=False)
    match outcome:
        case Done(attempts=attempts):
            log.info("telephony.redirected", call_sid=sid, reason=request.reason, attempts=attempts)
            return Done(value=None, attempts=attempts)
        case Failed(error=error, attempts=attempts):
            ended = is_already_ended(error)
            # A call that is over is an outcome like any other; anything else is trouble.
            report = log.info if ended else log.error
            report(
                "telephony.redirect_failed",
                call_sid=sid,
                reason=request.reason,
                attempts=attempts,
                error=str(outcome),
                ended=ended,
            )
            return outcome
    return outcome  # pragma: no cover
