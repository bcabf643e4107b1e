"""A TARS in a child process (``python run.py``) on a database that outlives it, with the
stand-ins in this process: for tests that signal or kill the daemon, and the cluster
benchmark (several daemons on one PostgreSQL database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tars_actors.net.loop import LoopThread
from tars_actors.runtime.settings.sections import ClusterSettings
from tars_actors.sim._waiting import wait_until
from tars_actors.sim.gemini import GeminiLiveStandIn, LiveConnection, tone
from tars_actors.sim.process import OWNER_PHONE as OWNER
from tars_actors.sim.process import PUBLIC_URL, DaemonProcess, write_settings
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.tls import create_local_certificate
from tars_actors.sim.twilio_api import TwilioRestStandIn
from tars_actors.sim.world import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, TWILIO_NUMBER
from tars_actors.store import AgentSession, Daemon, InterSessionMessage, Store, utcnow

__all__ = ["OWNER", "WAIT", "OwnerAndCaller", "Rig", "notes_saying", "speaking"]

WAIT = 20.0
_DEFAULT_LEASE = ClusterSettings().lease_seconds


@dataclass(frozen=True, slots=True)
class OwnerAndCaller:
    """Two live calls: the owner's and a caller's, each with its model connection."""

    owner: SyncSoftphone
    owner_model: LiveConnection
    caller: SyncSoftphone
    caller_model: LiveConnection


class Rig:
    """The stand-ins in this process, TARS in a child process on a database that outlives it."""

    def __init__(
        self,
        directory: Path,
        extra: dict[str, dict[str, int | str]] | None = None,
        *,
        database_url: str | None = None,
    ) -> None:
        """``database_url``: a database of the test's (PostgreSQL, for several daemons)
        instead of a SQLite file in ``directory``."""
        self.directory = directory
        self.extra = extra or {}
        self.gemini = GeminiLiveStandIn(create_local_certificate(directory / "tls"))
        self.twilio = TwilioRestStandIn(auth_token=FAKE_AUTH_TOKEN, account_sid=FAKE_ACCOUNT_SID)
        self.loop = LoopThread("rig-phones")
        self.settings = directory / "settings.toml"
        self.database_url = database_url or f"sqlite:///{directory / 'tars.db'}"
        if database_url is not None:
            self.extra = {**self.extra, "database": {"url": database_url}}

    def start(self) -> None:
        self.gemini.start()
        self.twilio.start()
        self.rewrite_settings(self.extra)

    def rewrite_settings(self, extra: dict[str, dict[str, int | str]]) -> None:
        """Write the settings file again with ``extra`` keys (for a SIGHUP)."""
        self.extra = extra
        self.settings = write_settings(
            self.directory,
            extra=self.extra,
            twilio_base_url=self.twilio.base_url,
            gemini_base_url=self.gemini.base_url,
            gemini_ca_file=self.gemini.ca_file,
        )

    def daemon(self) -> tuple[DaemonProcess, int]:
        process = DaemonProcess(self.settings, self.directory, keep_records=True)
        return process, process.wait_started(timeout=WAIT)

    def member(self) -> tuple[DaemonProcess, int, str]:
        """A daemon on a shared PostgreSQL database, its port, and its id among the members."""
        process, port = self.daemon()
        return process, port, str(process.wait_for_event("cluster.joined", WAIT)["daemon"])

    def greeted(self, phone: SyncSoftphone, connection: int) -> LiveConnection:
        """``phone`` calls; its call's model connection (the ``connection``-th the stand-in
        has seen), once the greeting has played."""
        phone.call()
        model = self.gemini.wait_for_connection(connection, timeout=WAIT)
        phone.wait_for_mark("turn-1", timeout=WAIT)
        return model

    def owner_and_caller(self, owner_port: int, caller_port: int, caller: str) -> OwnerAndCaller:
        """The owner calls through ``owner_port``, then ``caller`` through ``caller_port``;
        each is greeted, and the caller announced in the owner's call (its second note)."""
        owner = self.phone(owner_port, OWNER)
        owner_model = self.greeted(owner, 1)
        calling = self.phone(caller_port, caller)
        caller_model = self.greeted(calling, 2)
        owner_model.wait_for_client_content(count=2, timeout=WAIT)
        return OwnerAndCaller(owner, owner_model, calling, caller_model)

    def note_held(
        self, owner_port: int, caller_port: int, caller: str, text: str, holder: str
    ) -> OwnerAndCaller:
        """The owner's and a caller's calls (:meth:`owner_and_caller`); the owner's model
        speaks, so that the caller's ``take_message`` of ``text`` waits in the hands of the
        owner's call on the member ``holder`` (one attempt)."""
        calls = self.owner_and_caller(owner_port, caller_port, caller)
        calls.owner_model.send_turn_complete()
        speaking(calls.owner, calls.owner_model)  # the owner's call holds notes meanwhile
        taken = calls.caller_model.send_tool_call("take_message", {"message": text})
        assert calls.caller_model.wait_for_tool_response(taken, timeout=WAIT).response["ok"]
        wait_until(
            lambda: (
                [(m.held_by, m.attempts) for m in self.messages() if text in m.body]
                == [(holder, 1)]
            ),
            "the note to be in the hands of the owner's call",
            timeout=WAIT,
        )
        return calls

    def phone(self, port: int, number: str, **options: Any) -> SyncSoftphone:
        return SyncSoftphone(
            **options,
            server_url=f"http://127.0.0.1:{port}",
            public_url=PUBLIC_URL,
            auth_token=FAKE_AUTH_TOKEN,
            account_sid=FAKE_ACCOUNT_SID,
            from_number=number,
            to_number=TWILIO_NUMBER,
            loop=self.loop,
        )

    def messages(self) -> list[Any]:
        return self._rows(InterSessionMessage)

    def sessions(self) -> list[Any]:
        return self._rows(AgentSession)

    def _rows(self, model: Any, order: Any = None) -> list[Any]:
        store = Store.open(self.database_url)
        try:
            with store.connection():
                return list(model.select().order_by(order or model.id))
        finally:
            store.shutdown()

    def rows(self, model: Any, order: Any = None) -> list[Any]:
        """Every row of ``model`` (by id, or ``order``)."""
        return self._rows(model, order)

    def heartbeats(self, count: int) -> None:
        """Wait until every serving member has renewed its heartbeat ``count`` times from now
        (each beat also sweeps for messages no one holds): what a duplicate would need."""
        lease = float(self.extra.get("cluster", {}).get("lease_seconds", _DEFAULT_LEASE))
        since = utcnow() + timedelta(seconds=count * lease / 3)
        wait_until(
            lambda: all(
                d.heartbeat_at >= since for d in self.rows(Daemon) if d.status == "serving"
            ),
            f"{count} heartbeats of every member",
            timeout=WAIT + count * lease / 3,
        )

    def stop(self) -> None:
        self.loop.stop()
        self.gemini.stop()
        self.twilio.stop()

    def __enter__(self) -> Rig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def speaking(phone: SyncSoftphone, model: LiveConnection) -> None:
    """The model starts a turn and leaves it open (its call takes no notes meanwhile)."""
    before = len(phone.received_audio)
    model.send_output_transcription("Let me explain,")
    model.send_audio(tone(300.0, 0.4))
    phone.wait_for_audio(before + 1600, timeout=WAIT)


def notes_saying(model: LiveConnection, words: str) -> int:
    """How many times ``words`` reached the model as a note."""
    return sum(words in str(content) for content in model.client_contents)
