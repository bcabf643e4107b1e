"""A TARS in a child process (``python run.py``) on a database that outlives it, with the
stand-ins in the test's process: for tests that signal or kill the daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tars_actors.net.loop import LoopThread
from tars_actors.sim.gemini import GeminiLiveStandIn
from tars_actors.sim.process import OWNER_PHONE as OWNER
from tars_actors.sim.process import PUBLIC_URL, DaemonProcess, write_settings
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.tls import create_local_certificate
from tars_actors.sim.twilio_api import TwilioRestStandIn
from tars_actors.sim.world import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, TWILIO_NUMBER
from tars_actors.store import AgentSession, InterSessionMessage, Store

__all__ = ["OWNER", "WAIT", "Rig"]

WAIT = 20.0


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

    def stop(self) -> None:
        self.loop.stop()
        self.gemini.stop()
        self.twilio.stop()

    def __enter__(self) -> Rig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
