"""What the softphone records of a call: webhook answers, media, playout, marks and clears."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Clear", "HttpReply", "MarkReturn", "PlayedAudio", "ReceivedMedia", "StreamRejected"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpReply:
    status: int
    body: str
    content_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMedia:
    """One outbound ``media`` frame as it arrived, and when Twilio would start playing it."""

    at: float
    payload: bytes
    play_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayedAudio:
    """Audio that actually played (a clear cuts segments short), from ``start``."""

    start: float
    audio: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkReturn:
    """A ``mark`` the server sent and its echo: ``flushed`` means returned by a ``clear``."""

    name: str
    received_at: float
    returned_at: float
    flushed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Clear:
    at: float
    dropped_bytes: int
    flushed_marks: tuple[str, ...]


class StreamRejected(Exception):
    """The server refused the stream upgrade (e.g. 403 for a bad signature)."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"stream upgrade refused with HTTP {status_code}: {body[:200]}")
        self.status_code = status_code
        self.body = body
