"""TARS as operators run it, ``python run.py``, in a child process: for the load benchmark
and for tests that kill the daemon outright."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tars_actors.sim.world import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FAKE_GEMINI_KEY, TWILIO_NUMBER

__all__ = ["OWNER_PHONE", "PUBLIC_URL", "ROOT", "DaemonProcess", "free_port", "write_settings"]

#: The checkout: where run.py is.
ROOT = Path(__file__).resolve().parents[2]
#: The owner of a TARS in a child process (``python run.py`` refuses settings.toml's
#: placeholder number).
OWNER_PHONE = "+15555550123"
PUBLIC_URL = "https://tars.example.test"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago: for a fixed ``[server] port``
    (several workers share one; port 0 would give each its own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_settings(
    directory: Path,
    *,
    twilio_base_url: str,
    gemini_base_url: str,
    gemini_ca_file: str,
    extra: dict[str, dict[str, int | str]] | None = None,
) -> Path:
    """A settings.toml for a TARS on 127.0.0.1 that talks to the stand-ins, with its
    database in ``directory``; ``extra`` adds or overrides keys by section."""
    sections: dict[str, dict[str, int | str]] = {
        "owner": {"phone": OWNER_PHONE},
        "server": {"host": "127.0.0.1", "port": 0, "public_url": PUBLIC_URL},
        "twilio": {"phone_number": TWILIO_NUMBER, "api_base_url": twilio_base_url},
        "gemini": {"base_url": gemini_base_url, "ca_file": gemini_ca_file},
        "database": {"url": f"sqlite:///{directory / 'tars.db'}"},
        "logging": {"format": "json"},
    }
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = directory / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class DaemonProcess:
    """``python run.py --settings FILE`` in a child process with the stand-ins' fake
    credentials, its JSON log lines read on a thread.

    With ``workers`` it is ``python run.py --workers N``: above 1, ``process`` is the parent
    and ``pids`` the workers that started (their log lines come through the parent's output).
    """

    def __init__(
        self,
        settings_path: Path,
        directory: Path,
        *,
        keep_records: bool = False,
        workers: int | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TARS_", "TWILIO_"))}
        env.update(
            TWILIO_ACCOUNT_SID=FAKE_ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN,
            GEMINI_API_KEY=FAKE_GEMINI_KEY,
        )
        self.process = subprocess.Popen(  # noqa: S603 (our own run.py, fixed arguments)
            [
                sys.executable,
                str(ROOT / "run.py"),
                "--settings",
                str(settings_path),
                *(["--workers", str(workers)] if workers is not None else []),
            ],
            cwd=directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.port: int | None = None
        self.workers = workers or 1
        #: The process id of every ``daemon.started``, in order (a restarted worker's too).
        self.pids: list[int] = []
        self.errors: list[str] = []
        self.summaries: list[dict[str, Any]] = []
        #: Every JSON log line, with ``keep_records`` (the load benchmark keeps none).
        self.records: list[dict[str, Any]] = []
        self._keep_records = keep_records
        self._summaries_changed = threading.Condition()
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                self.errors.append(line.rstrip())
                continue
            if self._keep_records and isinstance(record, dict):
                with self._summaries_changed:
                    self.records.append(record)
                    self._summaries_changed.notify_all()
            if record.get("event") == "daemon.started":
                self.port = int(record["port"])
                self.pids.append(int(record["pid"]))
                if len(self.pids) >= self.workers:
                    self._started.set()
            elif record.get("event") == "call.summary":
                with self._summaries_changed:
                    self.summaries.append(record)
                    self._summaries_changed.notify_all()
            elif record.get("level") in ("error", "critical"):
                self.errors.append(line.rstrip())
        self._started.set()
        with self._summaries_changed:
            self._summaries_changed.notify_all()

    def wait_started(self, timeout: float) -> int:
        """The port, once every worker has started."""
        if not self._started.wait(timeout) or len(self.pids) < self.workers:
            raise RuntimeError(f"the server did not start: {self.errors[-5:]}")
        assert self.port is not None
        return self.port

    def wait_for_event(self, event: str, timeout: float, count: int = 1) -> dict[str, Any]:
        """The ``count``-th log line with ``event`` (needs ``keep_records``)."""

        def found() -> list[dict[str, Any]]:
            return [r for r in self.records if r.get("event") == event]

        with self._summaries_changed:
            if not self._summaries_changed.wait_for(lambda: len(found()) >= count, timeout):
                raise TimeoutError(f"no {event!r} line ({count}) within {timeout:g} s")
            return found()[count - 1]

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._summaries_changed:
            return [r for r in self.records if r.get("event") == event]

    def wait_for_summaries(self, count: int, timeout: float) -> list[dict[str, Any]]:
        with self._summaries_changed:
            self._summaries_changed.wait_for(lambda: len(self.summaries) >= count, timeout)
            return list(self.summaries)

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to finish anything."""
        self.process.kill()
        self.process.wait()
        self._reader.join(timeout=10)

    def stop(self) -> None:
        """SIGTERM, and wait for the daemon to exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
