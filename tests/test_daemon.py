"""run.py as operators use it: serve until SIGTERM, give up loudly, check the settings."""

from __future__ import annotations

import gc
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from tars_actors.daemon.lifecycle import EXIT_GAVE_UP, Daemon, watch_collection_pauses
from tars_actors.daemon.tree import Runtime
from tars_actors.ops import cli
from tars_actors.runtime.actor import TarsActor
from tars_actors.runtime.settings import parse_settings
from tars_actors.runtime.supervision import ChildSpec, Restart
from tests.logs import log_events

ROOT = Path(__file__).resolve().parent.parent

FAKE_SECRETS = {
    "TWILIO_ACCOUNT_SID": "ACtest00000000000000000000000000",
    "TWILIO_AUTH_TOKEN": "test-auth-token-not-real",
    "GEMINI_API_KEY": "test-gemini-key-not-real",
}
READY_FOR_CALLS = {
    "TARS_OWNER_PHONE": "+15555550123",
    "TARS_TWILIO_PHONE_NUMBER": "+15555550999",
    "TARS_SERVER_PUBLIC_URL": "https://tars.test-host.dev",
}


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def _settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "tars.db"}"\n'
        "[server]\nport = 0\n"
        "[supervision]\nshutdown_timeout_seconds = 2\n",
        encoding="utf-8",
    )
    return path


def _clean_environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARS_", "TWILIO_", "GEMINI_"))}
    env.update(extra)
    return env


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    lines.put("")


def _wait_for_event(lines: queue.Queue[str], event: str, timeout: float) -> dict[str, Any]:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {event!r} line within {timeout}s; got {seen[-5:]}") from None
        if not line:
            raise AssertionError(f"output ended before {event!r}; got {seen[-5:]}")
        seen.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            return dict(record)


def test_serve_runs_until_sigterm_then_shuts_down_and_exits_zero(tmp_path: Path) -> None:
    env = _clean_environ(**FAKE_SECRETS, **READY_FOR_CALLS)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--settings", str(_settings_file(tmp_path))],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        started = _wait_for_event(lines, "daemon.started", timeout=30)
        assert started["pid"] == process.pid
        assert started["resampler"] == "libsoxr"
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        stopped = _wait_for_event(lines, "daemon.stopped", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0
    assert stopped["level"] == "info"
    log_text = "".join(list(lines.queue))
    for secret in FAKE_SECRETS.values():
        assert secret not in log_text


class _CrashesSoonAfterStart(TarsActor):
    def on_start(self) -> None:
        self.actor_ref.tell("crash")

    def on_receive(self, message: Any) -> Any:
        raise RuntimeError("this child always crashes")


def _crashing_children(runtime: Runtime) -> list[ChildSpec]:
    return [ChildSpec(id="crasher", start=_CrashesSoonAfterStart.start, restart=Restart.PERMANENT)]


def test_daemon_exits_non_zero_when_the_root_supervisor_gives_up(tmp_path: Path) -> None:
    settings = parse_settings(
        {"database": {"url": f"sqlite:///{tmp_path / 'tars.db'}"}},
        environ={},
    )
    daemon = Daemon(settings, _children=_crashing_children, with_server=False)
    daemon.start()

    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(daemon.wait()))
    waiter.start()
    waiter.join(timeout=30)

    assert not waiter.is_alive()
    assert result == [EXIT_GAVE_UP]
    assert daemon.watch is not None
    assert daemon.watch.gave_up


def test_check_prints_the_configuration_with_secrets_redacted_and_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith(("TARS_", "TWILIO_", "GEMINI_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", FAKE_SECRETS["TWILIO_AUTH_TOKEN"])
    out = io.StringIO()

    code = cli.main(["--settings", str(_settings_file(tmp_path)), "check"], stdout=out)

    text = out.getvalue()
    assert code == 1
    assert FAKE_SECRETS["TWILIO_AUTH_TOKEN"] not in text
    assert "***set***" in text
    assert "database: reachable, schema version" in text
    assert "GEMINI_API_KEY" in text  # listed as missing for real calls
    assert "TWILIO_ACCOUNT_SID" in text


def test_check_says_ready_when_everything_for_real_calls_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {**FAKE_SECRETS, **READY_FOR_CALLS}.items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()

    code = cli.main(["--settings", str(_settings_file(tmp_path)), "check"], stdout=out)

    assert code == 0, out.getvalue()
    assert out.getvalue().rstrip().endswith("ready for real calls")


def test_invalid_settings_stop_the_start_with_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[sessions]\nmax_concurent = 3\n[reminders]\ndelivery = "pigeon"\n', encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--settings", str(path), "check"],
        cwd=tmp_path,
        env=_clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 2
    assert any("[sessions] max_concurent" in p and "max_concurrent" in p for p in problems)
    assert any("[reminders] delivery" in p for p in problems)


def test_serve_refuses_to_start_without_credentials_and_names_them(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--settings", str(_settings_file(tmp_path))],
        cwd=tmp_path,
        env=_clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    for name in FAKE_SECRETS:
        assert name in result.stderr


def test_a_long_garbage_collection_pass_is_logged_with_its_generation(logs: io.StringIO) -> None:
    watch = watch_collection_pauses(threshold=0.0)  # every pass counts as long here
    try:
        gc.collect(1)
        gc.collect()
    finally:
        gc.callbacks.remove(watch)
    pauses = log_events(logs, "gc.pause")
    # The two passes asked for, in order (a young-generation pass may come in between).
    generations = [pause["generation"] for pause in pauses]
    assert 2 in generations[generations.index(1) + 1 :]
    assert all(pause["level"] == "warning" and pause["pause_ms"] >= 0 for pause in pauses)


def test_a_short_garbage_collection_pass_is_not_logged(logs: io.StringIO) -> None:
    watch = watch_collection_pauses(threshold=60.0)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(watch)
    assert log_events(logs, "gc.pause") == []
