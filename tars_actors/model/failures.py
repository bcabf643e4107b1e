"""How a Gemini Live connection's end is classified: expected or not, why, and whether the
connection actor exits with an error (so that its supervisor connects again)."""

from __future__ import annotations

from dataclasses import dataclass

import websockets
from google.genai import errors

__all__ = ["Ending", "SessionGone", "SetupIncomplete", "ending_for", "setup_timed_out"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ending:
    """One connection's end. Unexpected ends make the actor exit with an error, which its
    supervisor answers by connecting again (with the latest resumption handle)."""

    expected: bool
    reason: str
    close_code: int | None = None
    #: The session is gone: nobody is left to tell.
    orphaned: bool = False
    #: Not a close or a network failure but a fault on our side, logged with its traceback.
    fault: bool = False
    #: The model said no before setup completed (quota, key, permission): trying again
    #: at once would be refused again.
    refused: bool = False


class SessionGone(Exception):
    """The CallSession actor is dead, so this connection has no one to serve."""


class SetupIncomplete(Exception):
    """The server's first answer to setup was not ``setupComplete``."""


def ending_for(error: BaseException, *, live: bool) -> Ending:
    """The end ``error`` means; ``live``: setup had completed when it was raised."""
    setup = "" if live else "setup failed: "
    match error:
        case SessionGone():
            return Ending(expected=True, reason="the call session is gone", orphaned=True)
        case errors.APIError():
            # How google-genai reports every close, a normal one (1000) included.
            detail = error.message or (error.details if isinstance(error.details, str) else "")
            closed = "closed by the model" if live else "setup rejected by the model"
            reason = f"{closed} (code {error.code}{': ' + detail if detail else ''})"
            refused = not live and _refusal(error.code, detail)
            return Ending(expected=False, reason=reason, close_code=error.code, refused=refused)
        case websockets.ConnectionClosed():
            # A send found the socket closed before the receiver learned of it.
            code = error.rcvd.code if error.rcvd is not None else 1006
            detail = error.rcvd.reason if error.rcvd is not None else "abnormal closure"
            reason = f"{setup}closed by the model (code {code}{': ' + detail if detail else ''})"
            refused = not live and _refusal(code, detail)
            return Ending(expected=False, reason=reason, close_code=code, refused=refused)
        case websockets.InvalidStatus():
            status = error.response.status_code
            reason = f"connection refused: HTTP {status}"
            return Ending(expected=False, reason=reason, refused=status in _REFUSING_STATUSES)
        case websockets.InvalidHandshake():
            return Ending(expected=False, reason=f"{setup}WebSocket handshake: {error}")
        case SetupIncomplete():
            return Ending(expected=False, reason=f"{setup}{error}")
        case OSError():
            # Refused or reset connections, DNS failures, certificate errors.
            return Ending(expected=False, reason=f"cannot reach the model: {error}")
        case _:
            return Ending(
                expected=False, reason=f"{setup}{type(error).__name__}: {error}", fault=True
            )


#: HTTP answers to the Live upgrade that say no to this key or project, not "try again".
_REFUSING_STATUSES = frozenset({401, 403, 429})
#: Close codes the Live service refuses a setup with: 1007 and 1008 for a key that is not
#: valid or has no permission.
_REFUSING_CODES = frozenset({1007, 1008})
#: What the Live service says when it closes a setup for quota (concurrent sessions over
#: the project's tier come as 1011 with RESOURCE_EXHAUSTED), billing or a key.
_REFUSING_WORDS = ("quota", "exhausted", "billing", "api key", "permission")


def _refusal(code: int | None, detail: str) -> bool:
    """Whether a close during setup is the service saying no (rather than a fault that a
    new connection may not meet)."""
    text = detail.lower()
    if "handle" in text:
        return False  # a resumption handle refused: a fresh connection is welcome
    return code in _REFUSING_CODES or any(word in text for word in _REFUSING_WORDS)


def setup_timed_out(seconds: float) -> Ending:
    """The end of a connection whose setup did not complete within ``seconds``."""
    return Ending(expected=False, reason=f"setup did not complete within {seconds:g} s")
