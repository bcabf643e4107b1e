"""Twilio's side of a phone call, played against our server: webhooks, Media Streams, playout.

A :class:`Softphone` fetches TwiML with a signed ``GET /twilio/voice`` (or starts from TwiML
given to ``calls.create``), opens the ``<Stream>`` WebSocket with a signed upgrade, sends
``connected``/``start`` and 20 ms μ-law ``media`` frames paced in real time, and models Twilio's
playout buffer: outbound audio plays in real time, a ``mark`` comes back once the audio before
it has played, ``clear`` drops what is buffered and returns pending marks at once. It checks
that the server sends only Twilio's three message kinds with exactly Twilio's keys.

:class:`Softphone` is asyncio (many calls in one loop, for the load tool); :class:`SyncSoftphone`
runs one on a loop thread for blocking tests. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import time
import uuid
import xml.etree.ElementTree as ET
from array import array
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
import websockets
import yarl
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tars_actors.net.loop import LoopThread
from tars_actors.sim._waiting import Changes

__all__ = [
    "FRAME_BYTES",
    "FRAME_SECONDS",
    "MULAW_SILENCE",
    "Clear",
    "HttpReply",
    "MarkReturn",
    "PlayedAudio",
    "ReceivedMedia",
    "Softphone",
    "StreamInstruction",
    "StreamRejected",
    "SyncSoftphone",
    "Twiml",
    "TwimlError",
    "parse_twiml",
]

FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
FRAME_SECONDS = 0.02
MULAW_RATE = 8000
MULAW_SILENCE = 0xFF
_SILENT_FRAME = bytes([MULAW_SILENCE]) * FRAME_BYTES
# A frame sent this long after its due time counts as late.
LATE_AFTER_SECONDS = FRAME_SECONDS / 2

T = TypeVar("T")


# -- TwiML --------------------------------------------------------------------------------------


class TwimlError(ValueError):
    """TwiML that Twilio would refuse (bad XML, a stream URL that is not wss://...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInstruction:
    """``<Connect><Stream url>`` and its ``<Parameter>``s, in document order."""

    url: str
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def custom_parameters(self) -> dict[str, str]:
        return dict(self.parameters)


@dataclass(frozen=True, slots=True, kw_only=True)
class Twiml:
    """What a TwiML document asks Twilio to do."""

    xml: str
    verbs: tuple[str, ...]
    says: tuple[str, ...]
    hangup: bool
    stream: StreamInstruction | None


def parse_twiml(xml: str) -> Twiml:
    """Parse a ``<Response>``; raise :class:`TwimlError` when Twilio would refuse it."""
    try:
        # The document comes from the server under test on 127.0.0.1, not from strangers.
        root = ET.fromstring(xml)  # noqa: S314
    except ET.ParseError as error:
        raise TwimlError(f"TwiML is not well-formed XML: {error}") from error
    if root.tag != "Response":
        raise TwimlError(f"TwiML root must be <Response>, not <{root.tag}>")
    verbs: list[str] = []
    says: list[str] = []
    stream: StreamInstruction | None = None
    for verb in root:
        verbs.append(verb.tag)
        if verb.tag == "Say":
            says.append((verb.text or "").strip())
        elif verb.tag == "Connect":
            for noun in verb:
                if noun.tag != "Stream":
                    continue
                if stream is not None:
                    raise TwimlError("only one bidirectional <Stream> per call")
                url = noun.get("url")
                if not url:
                    raise TwimlError("<Stream> needs a url")
                parameters = tuple(
                    (parameter.get("name", ""), parameter.get("value", ""))
                    for parameter in noun
                    if parameter.tag == "Parameter"
                )
                stream = StreamInstruction(url=url, parameters=parameters)
    return Twiml(
        xml=xml,
        verbs=tuple(verbs),
        says=tuple(says),
        hangup="Hangup" in verbs,
        stream=stream,
    )


# -- records ------------------------------------------------------------------------------------


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


class _Segment:
    """Received audio not fully played yet."""

    __slots__ = ("audio", "start")

    def __init__(self, start: float, audio: bytes) -> None:
        self.start = start
        self.audio = audio

    def heard_by(self, now: float) -> int:
        return max(0, min(len(self.audio), int((now - self.start) * MULAW_RATE)))


class _PendingMark:
    __slots__ = ("due", "name", "received_at")

    def __init__(self, name: str, received_at: float, due: float) -> None:
        self.name = name
        self.received_at = received_at
        self.due = due


# -- the async softphone ------------------------------------------------------------------------


class Softphone:
    """One call's Twilio side, on the running asyncio loop.

    ``server_url`` is where the server really listens (``http://127.0.0.1:PORT``);
    ``public_url`` is ``[server] public_url``, which every signature is computed over.
    ``frame_source(chunk)`` (chunk numbers start at 1) supplies each 160-byte μ-law frame,
    e.g. with a frame counter for latency measurements; without it, audio given to
    :meth:`say` is sent, then silence (0xFF). The playout buffer counts a gap (an underrun)
    when audio arrives more than ``gap_tolerance`` seconds after the buffer ran dry: network
    jitter below that is what Twilio's own jitter buffer absorbs.
    """

    def __init__(
        self,
        *,
        server_url: str,
        public_url: str,
        auth_token: str,
        account_sid: str = "ACtest00000000000000000000000000",
        call_sid: str | None = None,
        from_number: str = "+15550123456",
        to_number: str = "+15550100000",
        direction: Literal["inbound", "outbound-api"] = "inbound",
        frame_source: Callable[[int], bytes] | None = None,
        record_audio: bool = True,
        gap_tolerance: float = FRAME_SECONDS / 2,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.account_sid = account_sid
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.from_number = from_number
        self.to_number = to_number
        self.direction = direction
        self._validator = RequestValidator(auth_token)
        self._frame_source = frame_source
        self._record_audio = record_audio
        self._gap_tolerance = gap_tolerance
        self._changes = Changes()
        self._microphone = bytearray()
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._mark_sends: set[asyncio.Task[None]] = set()
        self._sequence = itertools.count(1)
        self._connected_at: float | None = None
        self._hanging_up = False
        self._sending = False
        self._media_stopped = False
        # Sending.
        self._send_times = array("d")
        self._late_frames = 0
        self._max_send_lag = 0.0
        # Receiving and playout.
        self._received: list[ReceivedMedia] = []
        self._frames_received = 0
        self._bytes_received = 0
        self._playout_end = 0.0
        self._pending_audio: deque[_Segment] = deque()
        self._played: list[PlayedAudio] = []
        self._pending_marks: deque[_PendingMark] = deque()
        self._mark_timer: asyncio.TimerHandle | None = None
        self._marks: list[MarkReturn] = []
        self._clears: list[Clear] = []
        self._violations: list[str] = []
        self._underruns = 0
        self._underrun_seconds = 0.0
        self._audio_flowing = False
        # Closing.
        self._closed = False
        self._close_code: int | None = None
        self._close_reason = ""
        self._closed_by: Literal["softphone", "server"] | None = None

    # -- webhooks ---------------------------------------------------------------------------

    def sign(self, url: str, params: Mapping[str, str] | None = None) -> str:
        """``X-Twilio-Signature`` for ``url`` (a public URL) and POST ``params``."""
        return str(self._validator.compute_signature(url, dict(params or {})))

    def webhook_params(self, call_status: str) -> dict[str, str]:
        return {
            "CallSid": self.call_sid,
            "AccountSid": self.account_sid,
            "From": self.from_number,
            "To": self.to_number,
            "CallStatus": call_status,
            "Direction": self.direction,
            "ApiVersion": "2010-04-01",
        }

    async def dial(
        self,
        url: str | None = None,
        *,
        call_status: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        signature: str | None = None,
        sign: bool = True,
    ) -> Twiml:
        """The voice webhook: a signed GET of ``url`` (default ``{public_url}/twilio/voice``).

        ``signature`` replaces the computed one; ``sign=False`` leaves the header out. A
        non-200 answer raises :class:`TwimlError` with the status.
        """
        status = call_status or ("ringing" if self.direction == "inbound" else "in-progress")
        params = self.webhook_params(status) | dict(extra_params or {})
        reply = await self.get_signed(
            url or f"{self.public_url}/twilio/voice", params, signature=signature, sign=sign
        )
        if reply.status != 200:
            raise TwimlError(f"voice webhook answered HTTP {reply.status}: {reply.body[:200]}")
        return parse_twiml(reply.body)

    async def send_status(
        self,
        status: str = "completed",
        *,
        duration: int | None = None,
        url: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        signature: str | None = None,
        sign: bool = True,
    ) -> HttpReply:
        """A status callback (``CallDuration`` added for ``completed``, measured if not given)."""
        params = self.webhook_params(status)
        if status == "completed":
            if duration is None:
                started = self._connected_at or time.monotonic()
                duration = round(time.monotonic() - started)
            params["CallDuration"] = str(duration)
        params |= dict(extra_params or {})
        return await self.get_signed(
            url or f"{self.public_url}/twilio/status", params, signature=signature, sign=sign
        )

    async def get_signed(
        self,
        public_url: str,
        params: Mapping[str, str],
        *,
        signature: str | None = None,
        sign: bool = True,
    ) -> HttpReply:
        """GET ``public_url`` + ``params`` at the server's local address, signed as Twilio does."""
        separator = "&" if urlsplit(public_url).query else "?"
        signed_url = f"{public_url}{separator}{urlencode(params)}" if params else public_url
        local_url = self._local_http_url(signed_url)
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        elif sign:
            headers["X-Twilio-Signature"] = self.sign(signed_url)
        # encoded=True: the query must reach the server byte for byte as it was signed.
        async with (
            aiohttp.ClientSession() as session,
            session.get(yarl.URL(local_url, encoded=True), headers=headers) as response,
        ):
            body = await response.text()
            return HttpReply(status=response.status, body=body, content_type=response.content_type)

    def _local_http_url(self, public: str) -> str:
        if not public.startswith(self.public_url):
            raise ValueError(f"{public} is not under the public URL {self.public_url}")
        return self.server_url + public[len(self.public_url) :]

    def _local_ws_url(self, stream_url: str) -> str:
        parts = urlsplit(stream_url)
        if parts.scheme != "wss":
            raise TwimlError(f"<Stream url> must be wss://, got {stream_url!r}")
        if parts.query:
            raise TwimlError(f"<Stream url> must not carry a query string: {stream_url!r}")
        local = urlsplit(self.server_url)
        scheme = "wss" if local.scheme == "https" else "ws"
        return f"{scheme}://{local.netloc}{parts.path}"

    # -- the stream ---------------------------------------------------------------------------

    async def call(self) -> Twiml:
        """Dial the voice webhook and, if the TwiML connects a stream, open it."""
        twiml = await self.dial()
        if twiml.stream is not None:
            await self.connect(twiml)
        return twiml

    async def connect(
        self,
        twiml: Twiml | str,
        *,
        signature: str | None = None,
        sign: bool = True,
        open_timeout: float = 10.0,
    ) -> None:
        """Open the ``<Stream>`` of ``twiml`` (a parsed response or raw XML, e.g. from
        ``calls.create(twiml=...)``), send ``connected`` and ``start``, start sending media."""
        if self._ws is not None:
            raise RuntimeError(f"call {self.call_sid} already has a stream")
        if isinstance(twiml, str):
            twiml = parse_twiml(twiml)
        if twiml.stream is None:
            raise TwimlError("the TwiML connects no <Stream>")
        stream = twiml.stream
        headers = {}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        elif sign:
            headers["X-Twilio-Signature"] = self.sign(stream.url)
        try:
            self._ws = await ws_connect(
                self._local_ws_url(stream.url),
                additional_headers=headers,
                user_agent_header="Twilio.TmeWs/1.0",
                # Compression would cost both ends CPU for audio that does not compress.
                compression=None,
                proxy=None,
                open_timeout=open_timeout,
                ping_interval=None,
                max_queue=None,
            )
        except websockets.InvalidStatus as refused:
            response = refused.response
            raise StreamRejected(
                response.status_code, response.body.decode(errors="replace")
            ) from None
        self._connected_at = time.monotonic()
        ws = self._ws
        await ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
        start = {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "customParameters": stream.custom_parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": str(next(self._sequence)),
                    "streamSid": self.stream_sid,
                    "start": start,
                }
            )
        )
        self._sending = True
        self._tasks = [
            asyncio.create_task(self._send_media(ws), name=f"softphone-send-{self.call_sid}"),
            asyncio.create_task(self._receive(ws), name=f"softphone-receive-{self.call_sid}"),
        ]

    def say(self, mulaw: bytes) -> None:
        """Queue μ-law audio to be sent as the caller's voice, after what is already queued."""
        with self._changes.lock:
            self._microphone += mulaw

    @property
    def speaking(self) -> bool:
        """Whether audio given to :meth:`say` is still waiting to be sent."""
        return bool(self._microphone)

    async def send_dtmf(self, digit: str) -> None:
        await self._send_event("dtmf", "dtmf", {"track": "inbound_track", "digit": digit})

    async def send_raw(self, frame: str | bytes) -> None:
        """Send anything, e.g. malformed frames, as is."""
        if self._ws is None:
            raise RuntimeError("the stream is not connected")
        await self._ws.send(frame)

    async def hang_up(self) -> None:
        """The caller hangs up: ``stop``, then the socket closes. Idempotent."""
        ws = self._ws
        if ws is None or self._closed or self._hanging_up:
            return
        self._hanging_up = True
        try:
            await self._send_event(
                "stop", "stop", {"accountSid": self.account_sid, "callSid": self.call_sid}
            )
            await ws.close()
        except websockets.ConnectionClosed:
            pass
        await self._join_tasks()

    def stop_media(self) -> None:
        """Send no more media frames; the stream stays open and audio still plays.

        Not something Twilio does (it streams for as long as the call lasts): a load test
        stops the callers so that everything in flight can arrive before it counts.
        """
        self._media_stopped = True

    async def close(self) -> None:
        """Release the stream without the protocol's goodbye (tests' cleanup)."""
        if self._ws is not None:
            self._hanging_up = True
            await self._ws.close()
        await self._join_tasks()

    async def _join_tasks(self) -> None:
        """Wait for the stream's tasks; re-raise what broke them (a failing ``frame_source``)."""
        current = asyncio.current_task()
        tasks = [task for task in [*self._tasks, *self._mark_sends] if task is not current]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome

    async def _send_event(self, event: str, key: str, body: Mapping[str, Any]) -> None:
        if self._ws is None:
            raise RuntimeError("the stream is not connected")
        frame = {
            "event": event,
            "sequenceNumber": str(next(self._sequence)),
            "streamSid": self.stream_sid,
            key: body,
        }
        await self._ws.send(json.dumps(frame))

    def _next_frame(self, chunk: int) -> bytes:
        if self._frame_source is not None:
            frame = self._frame_source(chunk)
            if len(frame) != FRAME_BYTES:
                frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\xff")
            return frame
        if not self._microphone:
            return _SILENT_FRAME
        with self._changes.lock:
            frame = bytes(self._microphone[:FRAME_BYTES])
            del self._microphone[:FRAME_BYTES]
        return frame.ljust(FRAME_BYTES, b"\xff")

    async def _send_media(self, ws: ClientConnection) -> None:
        try:
            await self._pace_media(ws)
        finally:
            with self._changes.lock:
                self._sending = False
            self._changes.notify()

    async def _pace_media(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        prefix = '{"event":"media","sequenceNumber":"'
        middle = f'","streamSid":"{self.stream_sid}","media":{{"track":"inbound","chunk":"'
        for chunk in itertools.count(1):
            # Deadlines come from the start time, not from the previous frame: no drift.
            due = started + (chunk - 1) * FRAME_SECONDS
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._closed or self._hanging_up or self._media_stopped:
                return
            payload = base64.b64encode(self._next_frame(chunk)).decode("ascii")
            sequence = next(self._sequence)
            timestamp = (chunk - 1) * 20
            frame = (
                f'{prefix}{sequence}{middle}{chunk}","timestamp":"{timestamp}",'
                f'"payload":"{payload}"}}}}'
            )
            now = loop.time()
            try:
                await ws.send(frame)
            except websockets.ConnectionClosed:
                return
            lag = now - due
            with self._changes.lock:
                self._send_times.append(now)
                if lag > LATE_AFTER_SECONDS:
                    self._late_frames += 1
                self._max_send_lag = max(self._max_send_lag, lag)

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._on_message(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._on_closed(ws)

    def _on_closed(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        if self._mark_timer is not None:
            self._mark_timer.cancel()
        self._commit_played(loop.time())
        with self._changes.lock:
            self._closed = True
            self._close_code = ws.close_code if ws.close_code is not None else 1006
            self._close_reason = ws.close_reason or ""
            self._closed_by = "softphone" if self._hanging_up else "server"
        self._changes.notify()

    # -- what the server sends ----------------------------------------------------------------

    def _violation(self, what: str) -> None:
        with self._changes.lock:
            self._violations.append(what)
        self._changes.notify()

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._violation("binary frame (Twilio accepts text frames only)")
            return
        try:
            frame = json.loads(message)
        except ValueError:
            self._violation(f"not JSON: {message[:80]!r}")
            return
        if not isinstance(frame, dict):
            self._violation(f"not a JSON object: {message[:80]!r}")
            return
        event = frame.get("event")
        if frame.get("streamSid") != self.stream_sid:
            self._violation(f"{event} with streamSid {frame.get('streamSid')!r}")
            return
        match event:
            case "media":
                if self._expect_keys(frame, {"event", "streamSid", "media"}, "media", {"payload"}):
                    self._on_media(frame["media"]["payload"])
            case "mark":
                if self._expect_keys(frame, {"event", "streamSid", "mark"}, "mark", {"name"}):
                    name = frame["mark"]["name"]
                    if isinstance(name, str):
                        self._on_mark(name)
                    else:
                        self._violation(f"mark name is not a string: {name!r}")
            case "clear":
                if set(frame) == {"event", "streamSid"}:
                    self._on_clear()
                else:
                    self._violation(f"clear with keys {sorted(frame)}")
            case _:
                self._violation(f"unknown event {event!r}")

    def _expect_keys(
        self, frame: Mapping[str, Any], keys: set[str], inner: str, inner_keys: set[str]
    ) -> bool:
        body = frame.get(inner)
        if set(frame) != keys or not isinstance(body, dict) or set(body) != inner_keys:
            shape = {k: sorted(v) if isinstance(v, dict) else None for k, v in frame.items()}
            self._violation(f"{inner} with keys {shape}")
            return False
        return True

    def _on_media(self, payload: object) -> None:
        if not isinstance(payload, str):
            self._violation("media payload is not a string")
            return
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self._violation("media payload is not base64")
            return
        now = asyncio.get_running_loop().time()
        self._commit_played(now)
        with self._changes.lock:
            if self._playout_end < now:
                gap = now - self._playout_end
                if self._audio_flowing and gap > self._gap_tolerance:
                    self._underruns += 1
                    self._underrun_seconds += gap
                self._playout_end = now
            play_at = self._playout_end
            self._playout_end += len(audio) / MULAW_RATE
            self._audio_flowing = True
            self._pending_audio.append(_Segment(play_at, audio))
            self._frames_received += 1
            self._bytes_received += len(audio)
            if self._record_audio:
                self._received.append(ReceivedMedia(at=now, payload=audio, play_at=play_at))
        self._changes.notify()

    def _on_mark(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = max(now, self._playout_end)
        self._pending_marks.append(_PendingMark(name, now, due))
        if due <= now:
            self._return_due_marks()
        elif self._mark_timer is None:
            self._mark_timer = loop.call_at(due, self._return_due_marks)

    def _return_due_marks(self) -> None:
        # One timer for the oldest pending mark: equal deadlines must still return in order.
        loop = asyncio.get_running_loop()
        self._mark_timer = None
        now = loop.time()
        while self._pending_marks and self._pending_marks[0].due <= now:
            self._return_mark(self._pending_marks.popleft(), now, flushed=False)
        if self._pending_marks:
            self._mark_timer = loop.call_at(self._pending_marks[0].due, self._return_due_marks)

    def _return_mark(self, mark: _PendingMark, now: float, *, flushed: bool) -> None:
        with self._changes.lock:
            self._marks.append(
                MarkReturn(
                    name=mark.name, received_at=mark.received_at, returned_at=now, flushed=flushed
                )
            )
        self._changes.notify()
        if self._ws is not None and not self._closed:
            body = {"name": mark.name}
            frame = {
                "event": "mark",
                "sequenceNumber": str(next(self._sequence)),
                "streamSid": self.stream_sid,
                "mark": body,
            }
            # websockets writes a whole text message before its first await, so frames leave
            # in the order their sequence numbers were taken.
            task = asyncio.create_task(self._send_quietly(json.dumps(frame)))
            self._mark_sends.add(task)
            task.add_done_callback(self._mark_sends.discard)

    async def _send_quietly(self, frame: str) -> None:
        if self._ws is None:
            return
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(frame)

    def _on_clear(self) -> None:
        now = asyncio.get_running_loop().time()
        self._commit_played(now)
        dropped = 0
        with self._changes.lock:
            for segment in self._pending_audio:
                heard = segment.heard_by(now)
                if heard:
                    self._played.append(
                        PlayedAudio(start=segment.start, audio=segment.audio[:heard])
                    )
                dropped += len(segment.audio) - heard
            self._pending_audio.clear()
            self._playout_end = now
            self._audio_flowing = False
        if self._mark_timer is not None:
            self._mark_timer.cancel()
            self._mark_timer = None
        flushed = [mark.name for mark in self._pending_marks]
        while self._pending_marks:
            self._return_mark(self._pending_marks.popleft(), now, flushed=True)
        with self._changes.lock:
            self._clears.append(Clear(at=now, dropped_bytes=dropped, flushed_marks=tuple(flushed)))
        self._changes.notify()

    def _commit_played(self, now: float) -> None:
        with self._changes.lock:
            while self._pending_audio:
                segment = self._pending_audio[0]
                if segment.start + len(segment.audio) / MULAW_RATE > now:
                    break
                self._pending_audio.popleft()
                self._played.append(PlayedAudio(start=segment.start, audio=segment.audio))

    # -- records ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def sending(self) -> bool:
        """Whether media frames are still being sent (false after hang-up, close or an error)."""
        return self._sending

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def closed_by(self) -> Literal["softphone", "server"] | None:
        return self._closed_by

    @property
    def frames_sent(self) -> int:
        return len(self._send_times)

    @property
    def send_times(self) -> array[float]:
        """When media chunk ``n`` was sent is ``send_times[n - 1]``."""
        with self._changes.lock:
            return array("d", self._send_times)

    @property
    def late_frames(self) -> int:
        """Frames sent more than half a frame after their due time (the sender fell behind)."""
        return self._late_frames

    @property
    def max_send_lag(self) -> float:
        return self._max_send_lag

    @property
    def frames_received(self) -> int:
        return self._frames_received

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    @property
    def received(self) -> list[ReceivedMedia]:
        """Every ``media`` frame received, in order (empty when ``record_audio`` is off)."""
        with self._changes.lock:
            return list(self._received)

    @property
    def received_audio(self) -> bytes:
        with self._changes.lock:
            return b"".join(media.payload for media in self._received)

    def played(self) -> list[PlayedAudio]:
        """Audio that has played by now, cut short where a ``clear`` interrupted it."""
        now = time.monotonic()
        self._commit_played(now)
        with self._changes.lock:
            played = list(self._played)
            if self._pending_audio:
                segment = self._pending_audio[0]
                heard = segment.heard_by(now)
                if heard:
                    played.append(PlayedAudio(start=segment.start, audio=segment.audio[:heard]))
            return played

    def played_audio(self) -> bytes:
        return b"".join(segment.audio for segment in self.played())

    @property
    def buffered_seconds(self) -> float:
        """Audio received but not yet played."""
        return max(0.0, self._playout_end - time.monotonic())

    @property
    def underruns(self) -> int:
        """Gaps: audio arrived ``gap_tolerance`` after the buffer had run dry (not after a clear).

        Pauses between model turns count too; with an echoing far end every gap is a glitch.
        """
        return self._underruns

    @property
    def underrun_seconds(self) -> float:
        return self._underrun_seconds

    def echo_frames_missing(self) -> int:
        """For an echoing far end, once the echo drained: frames sent but not heard back."""
        return max(0, self.frames_sent - self._bytes_received // FRAME_BYTES)

    @property
    def marks(self) -> list[MarkReturn]:
        with self._changes.lock:
            return list(self._marks)

    @property
    def clears(self) -> list[Clear]:
        with self._changes.lock:
            return list(self._clears)

    @property
    def violations(self) -> list[str]:
        """Everything the server sent that Twilio would reject."""
        with self._changes.lock:
            return list(self._violations)

    # -- waiting ------------------------------------------------------------------------------

    def _audio_done(self, min_bytes: int) -> Callable[[], bool]:
        return lambda: self._bytes_received >= min_bytes

    def _mark_done(self, name: str) -> Callable[[], bool]:
        return lambda: any(mark.name == name for mark in self._marks)

    def _clear_done(self, count: int) -> Callable[[], bool]:
        return lambda: len(self._clears) >= count

    def _find_mark(self, name: str) -> MarkReturn:
        return next(mark for mark in self.marks if mark.name == name)

    async def wait_for_audio(self, min_bytes: int, timeout: float = 5.0) -> bytes:
        """Wait until ``min_bytes`` of μ-law arrived; return all received audio."""
        await self._changes.wait_async(
            self._audio_done(min_bytes), timeout, f"{min_bytes} bytes of audio"
        )
        return self.received_audio

    async def wait_for_mark(self, name: str, timeout: float = 5.0) -> MarkReturn:
        await self._changes.wait_async(self._mark_done(name), timeout, f"mark {name!r}")
        return self._find_mark(name)

    async def wait_for_clear(self, timeout: float = 5.0, *, count: int = 1) -> Clear:
        await self._changes.wait_async(self._clear_done(count), timeout, f"{count} clear(s)")
        return self.clears[count - 1]

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await self._changes.wait_async(lambda: self._closed, timeout, "the stream to close")
        return self._close_code

    async def wait_for(
        self, predicate: Callable[[Softphone], bool], timeout: float = 5.0, what: str = "it"
    ) -> None:
        await self._changes.wait_async(lambda: predicate(self), timeout, what)


# -- the blocking wrapper -----------------------------------------------------------------------


class SyncSoftphone:
    """A :class:`Softphone` on its own loop thread (or a shared :class:`LoopThread`)."""

    def __init__(
        self,
        *,
        server_url: str,
        public_url: str,
        auth_token: str,
        loop: LoopThread | None = None,
        **options: Any,
    ) -> None:
        self._own_loop = loop is None
        self._loop = loop or LoopThread("softphone")
        self.phone = Softphone(
            server_url=server_url, public_url=public_url, auth_token=auth_token, **options
        )

    @property
    def loop(self) -> LoopThread:
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        """Run ``coro`` on the phone's loop and wait for its result (e.g. a custom step)."""
        return self._loop.submit(coro).result(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Close the stream if still open and stop the loop thread if this phone owns it."""
        if not self._loop.loop.is_closed():
            self.run(self.phone.close())
        if self._own_loop:
            self._loop.stop()

    # Actions.

    def dial(self, url: str | None = None, **options: Any) -> Twiml:
        return self.run(self.phone.dial(url, **options))

    def connect(self, twiml: Twiml | str, **options: Any) -> None:
        self.run(self.phone.connect(twiml, **options))

    def call(self) -> Twiml:
        return self.run(self.phone.call())

    def say(self, mulaw: bytes) -> None:
        self.phone.say(mulaw)

    def send_dtmf(self, digit: str) -> None:
        self.run(self.phone.send_dtmf(digit))

    def send_raw(self, frame: str | bytes) -> None:
        self.run(self.phone.send_raw(frame))

    def hang_up(self) -> None:
        self.run(self.phone.hang_up())

    def send_status(self, status: str = "completed", **options: Any) -> HttpReply:
        return self.run(self.phone.send_status(status, **options))

    def get_signed(self, public_url: str, params: Mapping[str, str], **options: Any) -> HttpReply:
        return self.run(self.phone.get_signed(public_url, params, **options))

    # Waiting, on the caller's thread.

    def wait_for_audio(self, min_bytes: int, timeout: float = 5.0) -> bytes:
        phone = self.phone
        phone._changes.wait(phone._audio_done(min_bytes), timeout, f"{min_bytes} bytes of audio")
        return phone.received_audio

    def wait_for_mark(self, name: str, timeout: float = 5.0) -> MarkReturn:
        phone = self.phone
        phone._changes.wait(phone._mark_done(name), timeout, f"mark {name!r}")
        return phone._find_mark(name)

    def wait_for_clear(self, timeout: float = 5.0, *, count: int = 1) -> Clear:
        phone = self.phone
        phone._changes.wait(phone._clear_done(count), timeout, f"{count} clear(s)")
        return phone.clears[count - 1]

    def wait_closed(self, timeout: float = 5.0) -> int | None:
        phone = self.phone
        phone._changes.wait(lambda: phone.closed, timeout, "the stream to close")
        return phone.close_code

    def wait_for(
        self, predicate: Callable[[Softphone], bool], timeout: float = 5.0, what: str = "it"
    ) -> None:
        phone = self.phone
        phone._changes.wait(lambda: predicate(phone), timeout, what)

    # Records, read straight from the phone (``self.phone`` has the rest).

    @property
    def call_sid(self) -> str:
        return self.phone.call_sid

    @property
    def stream_sid(self) -> str:
        return self.phone.stream_sid

    @property
    def closed(self) -> bool:
        return self.phone.closed

    @property
    def close_code(self) -> int | None:
        return self.phone.close_code

    @property
    def closed_by(self) -> Literal["softphone", "server"] | None:
        return self.phone.closed_by

    @property
    def frames_sent(self) -> int:
        return self.phone.frames_sent

    @property
    def received(self) -> list[ReceivedMedia]:
        return self.phone.received

    @property
    def received_audio(self) -> bytes:
        return self.phone.received_audio

    def played_audio(self) -> bytes:
        return self.phone.played_audio()

    @property
    def marks(self) -> list[MarkReturn]:
        return self.phone.marks

    @property
    def clears(self) -> list[Clear]:
        return self.phone.clears

    @property
    def violations(self) -> list[str]:
        return self.phone.violations
