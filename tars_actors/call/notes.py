"""Notes for a call's model (routed messages and TARS's own instructions) waiting for a
turn boundary, and which routed messages the call has already taken."""

from __future__ import annotations

from tars_actors.actor_messages import TextTurn
from tars_actors.call.effects import CancelTimer, Effect, LogEvent, StartTimer, Timer

__all__ = ["NoteQueue"]


class NoteQueue:
    """Pending notes in arrival order; a routed message taken once is never taken again.

    The Router may hand the same message over twice (it retries after a restart); the
    caller must hear it once, so a repeat is refused even after the first went out.
    """

    __slots__ = ("_pending", "_taken", "wait_over", "waiting")

    def __init__(self) -> None:
        self._taken: set[int] = set()
        # (routed message id, or None for TARS's own instruction, and the text).
        self._pending: list[tuple[int | None, str]] = []
        #: The note-wait timer is running (the caller was mid-sentence).
        self.waiting = False
        #: ... and has fired: stop waiting for the caller.
        self.wait_over = False

    def __bool__(self) -> bool:
        return bool(self._pending)

    def take(self, message_id: int, text: str) -> bool:
        """Queue a routed message; False if this call took it already (a repeat)."""
        if message_id in self._taken:
            return False
        self._taken.add(message_id)
        self._pending.append((message_id, text))
        return True

    def instruct(self, text: str) -> None:
        """Queue an instruction from TARS itself; instructions are never repeats."""
        self._pending.append((None, text))

    def pending_ids(self) -> list[int]:
        """The routed messages queued and not yet drained."""
        return [mid for mid, _ in self._pending if mid is not None]

    def flush(
        self, *, caller_talking: bool, wait_seconds: float
    ) -> tuple[list[Effect], TextTurn | None]:
        """At a turn boundary: the queued notes as one turn, unless the caller is
        mid-sentence (then they get ``wait_seconds``, not forever: the NOTE_WAIT timer)."""
        if not self._pending:
            return [], None
        if caller_talking and not self.wait_over:
            if self.waiting:
                return [], None
            self.waiting = True
            return [StartTimer(name=Timer.NOTE_WAIT, delay=wait_seconds)], None
        effects: list[Effect] = [CancelTimer(name=Timer.NOTE_WAIT)] if self.waiting else []
        turn = self.drain()
        fields = {"message_ids": list(turn.note_ids)}
        return [*effects, LogEvent(event="call.note_sent", fields=fields)], turn

    def drain(self) -> TextTurn:
        """Every queued note as one model turn; the queue and its wait start over."""
        notes, self._pending = self._pending, []
        self.waiting = self.wait_over = False
        return TextTurn(
            text="\n\n".join(text for _, text in notes),
            note_ids=tuple(mid for mid, _ in notes if mid is not None),
        )
