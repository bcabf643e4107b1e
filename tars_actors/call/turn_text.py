"""What each side of a call said in the current turn, until it is stored as a transcript line."""

from __future__ import annotations

from tars_actors.call.effects import Effect, StoreTranscript

__all__ = ["TurnText"]


class TurnText:
    """The transcription parts of the turn so far, one list per side."""

    __slots__ = ("assistant", "caller")

    def __init__(self) -> None:
        self.caller: list[str] = []
        self.assistant: list[str] = []

    def caller_line(self) -> list[Effect]:
        """Store what the caller said (if anything) and start their next line."""
        text = "".join(self.caller).strip()
        self.caller.clear()
        return [StoreTranscript(speaker="caller", text=text)] if text else []

    def assistant_line(self, *, heard: bool) -> list[Effect]:
        """Store what the model said; ``heard``: it played to the end, uninterrupted."""
        text = "".join(self.assistant).strip()
        self.assistant.clear()
        return [StoreTranscript(speaker="assistant", text=text, heard=heard)] if text else []
