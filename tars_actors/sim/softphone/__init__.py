"""Twilio's side of a phone call, played against our server: webhooks, Media Streams, playout.

A :class:`Softphone` fetches TwiML with a signed ``GET /twilio/voice`` (or starts from TwiML
given to ``calls.create``), opens the ``<Stream>`` WebSocket with a signed upgrade, sends
``connected``/``start`` and 20 ms μ-law ``media`` frames paced in real time, and models Twilio's
playout buffer: outbound audio plays in real time, a ``mark`` comes back once the audio before
it has played, ``clear`` drops what is buffered and returns pending marks at once. It checks
that the server sends only Twilio's three message kinds with exactly Twilio's keys.

:class:`Softphone` is asyncio (many calls in one loop, for the load tool); :class:`SyncSoftphone`
runs one on a loop thread for blocking tests. ``_twiml`` reads TwiML, ``_webhooks`` signs and
sends the webhooks, ``_media`` writes and checks Media Streams messages, ``_pacer`` sends the
caller's frames in real time, ``_playout`` is the playout buffer, ``_softphone`` the call's
stream and ``_sync`` the blocking wrapper.
"""

from __future__ import annotations

from tars_actors.sim.softphone._media import FRAME_BYTES, FRAME_SECONDS, MULAW_SILENCE
from tars_actors.sim.softphone._menu import MenuNode, PhoneMenu
from tars_actors.sim.softphone._records import (
    Clear,
    HttpReply,
    MarkReturn,
    PlayedAudio,
    ReceivedMedia,
    StreamRejected,
)
from tars_actors.sim.softphone._softphone import Softphone
from tars_actors.sim.softphone._sync import SyncSoftphone
from tars_actors.sim.softphone._twiml import StreamInstruction, Twiml, TwimlError, parse_twiml
from tars_actors.sim.softphone._webhooks import FULL_ATTESTATION

__all__ = [
    "FRAME_BYTES",
    "FRAME_SECONDS",
    "FULL_ATTESTATION",
    "MULAW_SILENCE",
    "Clear",
    "HttpReply",
    "MarkReturn",
    "MenuNode",
    "PhoneMenu",
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
