"""The text API side of the Gemini stand-in: ``generateContent`` answered from a script.

The stand-in's HTTP server routes ``POST /{version}/models/{model}:generateContent`` here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tars_actors.sim._waiting import Changes
from tars_actors.sim.gemini._messages import api_key_of, texts_of

__all__ = ["TextApi", "TextReply", "TextRequest"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TextRequest:
    """One ``generateContent`` call: the model and the text of its contents."""

    model: str
    text: str
    api_key: str | None
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class TextReply:
    """A scripted ``generateContent`` outcome: ``text`` with 200, or an HTTP error."""

    text: str = ""
    status: int = 200
    error_status: str = "RESOURCE_EXHAUSTED"
    error_message: str = "Resource has been exhausted (e.g. check quota)."


class TextApi:
    """Scripted ``generateContent`` replies and a record of every request, waitable."""

    def __init__(self, *, changes: Changes, api_key: str | None, default_text: str) -> None:
        """``changes`` is the stand-in's: one lock and one signal for all it records."""
        self._changes = changes
        self._api_key = api_key
        self._default_text = default_text
        self._replies: deque[TextReply] = deque()
        self._requests: list[TextRequest] = []

    def queue_reply(self, text: str) -> None:
        """The next ``generateContent`` answers ``text``; later ones fall back to the default."""
        with self._changes.lock:
            self._replies.append(TextReply(text=text))

    def queue_error(
        self,
        status: int = 429,
        *,
        error_status: str = "RESOURCE_EXHAUSTED",
        message: str = "Resource has been exhausted (e.g. check quota).",
    ) -> None:
        """The next ``generateContent`` fails with HTTP ``status`` (Google's error JSON)."""
        with self._changes.lock:
            self._replies.append(
                TextReply(status=status, error_status=error_status, error_message=message)
            )

    @property
    def requests(self) -> list[TextRequest]:
        with self._changes.lock:
            return list(self._requests)

    def wait_for_request(self, count: int = 1, timeout: float = 5.0) -> TextRequest:
        return self._changes.wait_nth(
            lambda: self._requests, count, timeout, f"{count} generateContent calls"
        )

    async def generate(self, request: web.Request) -> web.Response:
        """The ``generateContent`` route: check the key, record the request, answer the script."""
        model, _, method = request.match_info["model_method"].rpartition(":")
        if method != "generateContent" or not model:
            return _google_error(404, "NOT_FOUND", f"unknown method {method!r}")
        api_key = api_key_of(request)
        if self._api_key is not None and api_key != self._api_key:
            return _google_error(400, "INVALID_ARGUMENT", "API key not valid.")
        try:
            body = await request.json()
        except ValueError:
            return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        texts: list[str] = []
        for content in body.get("contents") or []:
            texts.extend(texts_of(content))
        with self._changes.lock:
            self._requests.append(
                TextRequest(model=model, text="\n".join(texts), api_key=api_key, body=body)
            )
            reply = self._replies.popleft() if self._replies else TextReply(text=self._default_text)
        self._changes.notify()
        if reply.status != 200:
            return _google_error(reply.status, reply.error_status, reply.error_message)
        return web.json_response(
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": reply.text}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "modelVersion": model.removeprefix("models/"),
            }
        )


def _google_error(status: int, status_text: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "message": message, "status": status_text}}, status=status
    )
