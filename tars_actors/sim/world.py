"""A whole TARS on 127.0.0.1 with its stand-ins: the real daemon, server and actors, the
Gemini Live and Twilio REST stand-ins, and softphones to call it. Used by the integration
tests, the demo and the load benchmark.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tars_actors.daemon.lifecycle import Daemon
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.settings import Settings, parse_settings
from tars_actors.sim.gemini import GeminiLiveStandIn, LiveBehaviour
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.tls import create_local_certificate
from tars_actors.sim.twilio_api import TwilioRestStandIn

__all__ = ["LocalWorld"]

#: Obviously fake credentials: the stand-ins check them, nothing else ever sees them.
FAKE_ACCOUNT_SID = "AC00000000000000000000000000000000"
FAKE_AUTH_TOKEN = "local-stand-in-auth-token"  # noqa: S105 (only the stand-ins check it)  # noqa: S105 (checked by the stand-ins only)
FAKE_GEMINI_KEY = "local-stand-in-gemini-key"
#: The owner's keypad PIN in tests and the demo (``TARS_OWNER_PIN``); fake like the rest.
FAKE_OWNER_PIN = "2468"
OWNER_PHONE = "+15555550100"
TWILIO_NUMBER = "+15555550999"


class LocalWorld:
    """Starts everything on :meth:`start` (or ``with``) and stops it all on :meth:`stop`."""

    def __init__(
        self,
        *,
        directory: Path | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        behaviour: LiveBehaviour | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``environ``: more environment for the daemon's settings, e.g. ``TARS_OWNER_PIN``."""
        self._environ = dict(environ or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tars-world-")
            directory = Path(self._tmp.name)
        self.directory = directory
        self._overrides = settings or {}
        self._behaviour = behaviour
        self.certificate = create_local_certificate(directory / "tls")
        self.gemini = GeminiLiveStandIn(self.certificate, behaviour=behaviour)
        self.twilio = TwilioRestStandIn(auth_token=FAKE_AUTH_TOKEN, account_sid=FAKE_ACCOUNT_SID)
        self.phones_loop: LoopThread | None = None
        self.daemon: Daemon | None = None
        self.settings: Settings | None = None

    def start(self) -> Self:
        self.gemini.start()
        self.twilio.start()
        data: dict[str, dict[str, Any]] = {
            "owner": {"phone": OWNER_PHONE},
            "server": {"host": "127.0.0.1", "port": 0},
            "twilio": {"phone_number": TWILIO_NUMBER, "api_base_url": self.twilio.base_url},
            "gemini": {"base_url": self.gemini.base_url, "ca_file": str(self.gemini.ca_file)},
            "database": {"url": f"sqlite:///{self.directory / 'tars.db'}"},
            "logging": {"format": "json"},
        }
        for section, values in self._overrides.items():
            data.setdefault(section, {}).update(values)
        self.settings = parse_settings(
            data,
            environ={
                "TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
                "GEMINI_API_KEY": FAKE_GEMINI_KEY,
                **self._environ,
            },
            source="<local world>",
        )
        self.daemon = Daemon(self.settings)
        self.daemon.start()
        self.phones_loop = LoopThread("softphones")
        return self

    @property
    def port(self) -> int:
        assert self.daemon is not None
        assert self.daemon.server is not None
        return self.daemon.server.port

    def phone(self, from_number: str, **options: Any) -> SyncSoftphone:
        """A softphone that calls TARS from ``from_number`` (not dialled yet)."""
        assert self.settings is not None
        return SyncSoftphone(
            server_url=f"http://127.0.0.1:{self.port}",
            public_url=self.settings.server.public_url,
            auth_token=FAKE_AUTH_TOKEN,
            account_sid=FAKE_ACCOUNT_SID,
            from_number=from_number,
            to_number=TWILIO_NUMBER,
            loop=self.phones_loop,
            **options,
        )

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.shutdown()
            self.daemon = None
        if self.phones_loop is not None:
            self.phones_loop.stop()
            self.phones_loop = None
        self.gemini.stop()
        self.twilio.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
