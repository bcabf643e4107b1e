"""What TARS tells Twilio: the webhook and Media Streams paths, and the TwiML that connects a
call's stream or says goodbye."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from twilio.twiml.voice_response import VoiceResponse

__all__ = [
    "HEALTH_PATH",
    "MEDIA_PATH",
    "STATUS_PATH",
    "VOICE_PATH",
    "connect_twiml",
    "goodbye_twiml",
    "stream_url",
]

VOICE_PATH: Final = "/twilio/voice"
STATUS_PATH: Final = "/twilio/status"
MEDIA_PATH: Final = "/twilio/media"
HEALTH_PATH: Final = "/healthz"


def connect_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """``<Connect><Stream url=…>`` with one ``<Parameter>`` per item; nothing after it, so
    closing the socket hangs up."""
    response = VoiceResponse()
    stream = response.connect().stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    return str(response.to_xml())


def stream_url(public_url: str) -> str:
    """The ``wss://`` Media Streams URL for ``[server] public_url``: what ``<Stream url>``
    names (inbound and outbound calls alike) and what the upgrade's signature covers."""
    public = urlsplit(public_url)
    return f"wss://{public.netloc}{public.path}{MEDIA_PATH}"


def goodbye_twiml(text: str, language: str | None = None) -> str:
    """``<Say>`` then ``<Hangup/>``: refusing a call, or ending one the model cannot serve."""
    response = VoiceResponse()
    response.say(text, language=language)
    response.hangup()
    return str(response.to_xml())
