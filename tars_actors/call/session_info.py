"""What a call's session is, as tools, logs and the Router's presence see it."""

from __future__ import annotations

from dataclasses import dataclass

from tars_actors.call.permissions import Permission

__all__ = ["SessionInfo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """One session, fixed when its call starts (implements ToolContext)."""

    session_id: int
    session_name: str
    permission: Permission
    caller_number: str
    call_sid: str
    stream_sid: str
    direction: str
    #: What the call is for (a goal call's objective), for list_active_sessions.
    purpose: str | None = None
    #: The owner's number, still to type the PIN: the owner is not told of it as of a
    #: stranger's call (it is most likely their own).
    pin_pending: bool = False
    #: A screening call TARS placed to the owner: the transfer the owner is asked about.
    screening: int | None = None
