"""A message the Router takes in hand for a call is given back when the call turns out to be
gone, so it goes another way at once instead of waiting, held, for a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pykka

from actors.router import Router
from tars_actors.actor_messages import SendSms
from tars_actors.call.permissions import Permission
from tars_actors.call.session_info import SessionInfo
from tars_actors.messaging.routing import LiveSession, MessageType, Presence, Route
from tars_actors.runtime.settings import Secrets, Settings
from tars_actors.runtime.timers import ManualTimers
from tars_actors.store import InterSessionMessage, MessageStatus, Store


class Gone(pykka.ThreadingActor):
    """A call's actor that stopped a moment ago."""


class Texts(pykka.ThreadingActor):
    """Telephony's stand-in: what it was asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[SendSms] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SendSms):
            self.sent.append(message)
        return None


def test_a_note_for_a_call_whose_actor_just_stopped_goes_by_text_at_once(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'tars.db'}")
    store.migrate()
    store.connect()
    secrets = Secrets(twilio_account_sid="AC" + "1" * 32, twilio_auth_token="token")
    settings = Settings(secrets=secrets).with_overrides({"owner.phone": "+15550123456"})
    presence = Presence()
    gone = Gone.start()
    gone.stop()
    owner = SessionInfo(
        session_id=1,
        session_name="Owner",
        permission=Permission.OWNER,
        caller_number="+15550123456",
        call_sid="CA1",
        stream_sid="MZ1",
        direction="inbound",
    )
    presence.join(LiveSession(info=owner, ref=gone))
    texts = Texts.start()
    router = Router.start(
        settings=settings,
        store=store,
        presence=presence,
        telephony=lambda: texts,
        timers=ManualTimers(start=datetime(2026, 12, 7, tzinfo=UTC)),
    )
    try:
        reply = router.ask(
            Route(
                sender_session_id=None,
                sender_name="Bob",
                target="user",
                message_type=MessageType.NOTE,
                body="Call me back.",
                sender_permission=Permission.UNKNOWN,
            ),
            timeout=10,
        )
        assert reply.ok
        assert "text message" in reply.detail
        [row] = InterSessionMessage.select()
        # In hand for its text, not stuck in the hands of the call that was gone.
        assert (row.status, row.held_by, row.attempts) == (
            MessageStatus.PENDING,
            store.daemon_id,
            2,
        )
        [sms] = texts.proxy().sent.get(timeout=10)
        assert "Call me back." in sms.body
    finally:
        router.stop()
        texts.stop()
        store.shutdown()
