"""Twilio's webhook requests for one call, signed as Twilio signs them.

Every signature is computed over the public URL (``[server] public_url``) while the request goes
to where the server really listens, as behind Twilio's view of a reverse proxy.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlencode, urlsplit

import aiohttp
import yarl
from twilio.request_validator import RequestValidator

from tars_actors.sim.softphone._records import HttpReply
from tars_actors.sim.softphone._twiml import Twiml, TwimlError, parse_twiml

__all__ = ["FULL_ATTESTATION", "WebhookCaller"]

#: ``StirVerstat`` of a caller ID the originating carrier fully attested, as Twilio sends
#: it for most calls from mobile phones on major carriers.
FULL_ATTESTATION = "TN-Validation-Passed-A"


class WebhookCaller:
    """One call's identity and its signed webhooks (voice, status) to the server.

    ``server_url`` is where the server really listens (``http://127.0.0.1:PORT``);
    ``public_url`` is ``[server] public_url``, which every signature is computed over.
    ``stir_verstat`` is the caller ID's attestation an inbound call's webhooks carry (None:
    none, as for a number the carrier could not vouch for).
    """

    def __init__(
        self,
        *,
        server_url: str,
        public_url: str,
        auth_token: str,
        account_sid: str,
        call_sid: str | None,
        from_number: str,
        to_number: str,
        direction: Literal["inbound", "outbound-api"],
        stir_verstat: str | None = FULL_ATTESTATION,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.account_sid = account_sid
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.from_number = from_number
        self.to_number = to_number
        self.direction = direction
        self.stir_verstat = stir_verstat if direction == "inbound" else None
        self._validator = RequestValidator(auth_token)
        # When the stream opened: a completed status callback measures its duration from it.
        self._connected_at: float | None = None

    def sign(self, url: str, params: Mapping[str, str] | None = None) -> str:
        """``X-Twilio-Signature`` for ``url`` (a public URL) and POST ``params``."""
        return str(self._validator.compute_signature(url, dict(params or {})))

    def webhook_params(self, call_status: str) -> dict[str, str]:
        attestation = {} if self.stir_verstat is None else {"StirVerstat": self.stir_verstat}
        return attestation | {
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
