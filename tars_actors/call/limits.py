"""How long a call may last and wait for things (the limits a :class:`CallFlow` runs by), and
the figures it counts for its ``call.summary`` line."""

from __future__ import annotations

from dataclasses import dataclass, field

from tars_actors.call.effects import Effect, LogEvent, StartTimer, Timer
from tars_actors.runtime.supervision import Backoff

__all__ = ["CallLimits", "CallStats", "reconnect"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallLimits:
    max_call_seconds: float = 1800.0
    #: How long to wait for the goodbye's mark before hanging up anyway.
    end_call_grace_seconds: float = 10.0
    #: How long the call may be without a model connection before it is given up.
    model_unreachable_seconds: float = 20.0
    #: Caller audio kept while the model is reconnecting (20 ms frames).
    gap_buffer_seconds: float = 10.0
    #: Seconds before a goAway deadline at which the connection is rotated regardless.
    go_away_margin_seconds: float = 2.0
    #: How long Twilio gets to end the stream after the apology before TARS hangs up.
    apology_grace_seconds: float = 15.0
    #: How long a note for the model waits while the caller keeps talking.
    note_wait_seconds: float = 2.0
    #: A call started at its webhook whose stream has not opened after this long is
    #: given up (its model connection closed, its place freed), as a reservation is.
    stream_wait_seconds: float = 10.0
    reconnect_backoff: Backoff = field(
        default_factory=lambda: Backoff(initial=0.2, maximum=5.0, jitter=0.0)
    )


def reconnect(
    limits: CallLimits,
    *,
    attempt: int,
    connection_id: int,
    expected: bool,
    reason: str,
    resumable: bool,
) -> list[Effect]:
    """The model connection was lost (``attempt``: the how-manieth time in a row): reopen
    it after a backoff; the first loss of an outage starts the unreachable deadline."""
    delay = limits.reconnect_backoff.base_delay(attempt)
    effects: list[Effect] = [
        LogEvent(
            event="model.reconnecting",
            level="info" if expected else "warning",
            fields={
                "connection_id": connection_id,
                "reason": reason,
                "attempt": attempt,
                "delay": delay,
                "resumable": resumable,
            },
        ),
        StartTimer(name=Timer.MODEL_RESTART, delay=delay),
    ]
    if attempt == 1:
        # The unreachable deadline counts from the start of this outage.
        effects.append(
            StartTimer(name=Timer.MODEL_UNREACHABLE, delay=limits.model_unreachable_seconds)
        )
    return effects


@dataclass(slots=True)
class CallStats:
    """The figures of the ``call.summary`` line."""

    turns: int = 0
    interruptions: int = 0
    reconnects: int = 0
    tool_calls: int = 0
    tools_refused: int = 0

    def as_fields(self) -> dict[str, int]:
        return {
            "turns": self.turns,
            "interruptions": self.interruptions,
            "reconnects": self.reconnects,
            "tool_calls": self.tool_calls,
            "tools_refused": self.tools_refused,
        }
