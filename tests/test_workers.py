"""``python run.py --workers N``: N daemons on one port (SO_REUSEPORT) sharing a PostgreSQL
database, their parent passing stop signals on and starting again a worker that dies; refused
where the workers could not share their work."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tars_actors.ops.cli import EXIT_USAGE, main
from tars_actors.ops.workers import (
    EXIT_GAVE_UP,
    EXIT_OK,
    RestartPolicy,
    WorkerPool,
    worker_command,
)
from tars_actors.sim.process import DaemonProcess, free_port
from tests.logs import log_events
from tests.rig import OWNER, WAIT, Rig
from tests.waiting import wait_until

pytest_plugins = ("tests.pg",)

#: At most this many fresh connections to see every worker answer: the kernel picks a
#: worker by a hash of each connection's source port, so two workers each get about half.
MAX_CONNECTIONS = 200


def health(port: int) -> tuple[int, dict[str, object]]:
    """``GET /healthz`` on a fresh connection: the status and the JSON figures."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", "/healthz")
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


def answering_pids(port: int, expected: set[int]) -> set[int]:
    """The workers that answered fresh connections, until all of ``expected`` have (or
    MAX_CONNECTIONS were made); every answer must be a ready 200."""
    seen: set[int] = set()
    for _ in range(MAX_CONNECTIONS):
        status, figures = health(port)
        assert status == 200, figures
        seen.add(int(str(figures["pid"])))
        if expected <= seen:
            break
    return seen


@pytest.fixture
def pg_rig(tmp_path: Path, postgres_url: str) -> Iterator[Rig]:
    """The stand-ins, and settings for TARS on a fixed port and a PostgreSQL database."""
    extra: dict[str, dict[str, int | str]] = {
        "database": {"url": postgres_url},
        "server": {"port": free_port()},
        "sessions": {"shutdown_grace_seconds": 0.5},
    }
    with Rig(tmp_path, extra=extra) as running:
        yield running


def start_workers(rig: Rig, count: int = 2) -> tuple[DaemonProcess, int]:
    workers = DaemonProcess(rig.settings, rig.directory, keep_records=True, workers=count)
    try:
        return workers, workers.wait_started(timeout=WAIT * 2)
    except BaseException:
        workers.stop()
        raise


# -- refusals --------------------------------------------------------------------------------


def write(directory: Path, text: str) -> str:
    path = directory / "settings.toml"
    path.write_text('[owner]\nphone = "+15555550123"\n' + text, encoding="utf-8")
    return str(path)


def test_workers_on_sqlite_are_refused_with_the_reason_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = write(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path}/tars.db"\n')

    for argv in (["--workers", "2"], ["serve", "--workers", "2"]):
        assert main(["--settings", settings, *argv]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "[database] url" in err
        assert "several workers need PostgreSQL" in err
        assert "they share their calls, messages and reminders through it" in err
    assert not (tmp_path / "tars.db").exists()  # nothing started


def test_workers_on_port_0_are_refused_as_they_must_share_one_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Never connected to: the refusal comes before anything starts.
    url = f"postgresql://postgres@/tars?host={tmp_path}"
    settings = write(tmp_path, f'[server]\nport = 0\n[database]\nurl = "{url}"\n')

    assert main(["--settings", settings, "--workers", "3"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "[server] port is 0" in err
    assert "share one fixed port" in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be at least 1, got 0"),
        ("-2", "must be at least 1"),
        ("two", "must be a whole number, got 'two'"),
    ],
)
def test_a_worker_count_that_is_not_a_positive_number_is_a_usage_error(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", f"--workers={value}"])
    assert exit_.value.code == EXIT_USAGE
    assert f"argument --workers: {message}" in capsys.readouterr().err


def test_workers_go_with_serve_and_load_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--workers", "2", "check"])
    assert exit_.value.code == EXIT_USAGE
    assert "--workers goes with serve or load, not check" in capsys.readouterr().err


def test_one_worker_is_the_plain_daemon_with_no_parent(rig: Rig) -> None:
    single = DaemonProcess(rig.settings, rig.directory, keep_records=True, workers=1)
    try:
        single.wait_started(timeout=WAIT)
        # The daemon itself, not a parent of one, listening as before: not shared.
        assert single.pids == [single.process.pid]
        assert single.wait_for_event("server.listening", timeout=WAIT)["reuse_port"] is False
        assert single.events("workers.started") == []
    finally:
        single.stop()
    assert single.process.returncode == 0


# -- the restart rules -------------------------------------------------------------------------


def test_a_worker_that_died_restarts_no_sooner_than_the_gap_after_its_last_start() -> None:
    policy = RestartPolicy(gap=3.0, max_restarts=5, period=60.0)
    assert policy.restart_at(now=100.0, started_at=99.0) == 102.0  # died after a second
    assert policy.restart_at(now=200.0, started_at=102.0) == 200.0  # ran for a while: at once


def test_more_restarts_than_the_intensity_within_the_period_is_giving_up() -> None:
    policy = RestartPolicy(gap=3.0, max_restarts=5, period=60.0)
    for n in range(5):
        assert policy.restart_at(now=10.0 * n, started_at=10.0 * n - 3) is not None
    assert policy.restart_at(now=45.0, started_at=42.0) is None
    # Restarts spread wider than the period never add up.
    spread = RestartPolicy(gap=3.0, max_restarts=5, period=60.0)
    assert all(spread.restart_at(now=20.0 * n, started_at=0.0) is not None for n in range(20))


# -- the parent, with stand-in workers -----------------------------------------------------------


@pytest.fixture
def parent_signals() -> Iterator[None]:
    """The pool installs the parent's signal handlers in this process: put them back."""
    kept = {
        signum: signal.getsignal(signum)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
    }
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.usefixtures("parent_signals")
def test_a_worker_that_keeps_dying_makes_the_parent_give_up_and_exit_1(
    logs: io.StringIO,
) -> None:
    # The worker dies at once with exit code 3, every time.
    pool = WorkerPool(
        python("import sys; sys.exit(3)"),
        1,
        stop_timeout=WAIT,
        policy=RestartPolicy(gap=0.05, max_restarts=3, period=60.0),
    )
    pool.install_signal_handlers()

    assert pool.run() == EXIT_GAVE_UP

    died = log_events(logs, "workers.died")
    assert [d["exit_code"] for d in died] == [3, 3, 3, 3]
    assert len(log_events(logs, "workers.restarted")) == 3
    assert log_events(logs, "workers.gave_up")[0]["restarts"] == 4
    [stopped] = log_events(logs, "workers.stopped")
    assert list(stopped["exit_codes"].values()) == [3]


@pytest.mark.usefixtures("parent_signals")
def test_a_worker_that_ignores_the_stop_is_killed_after_the_stop_timeout(
    logs: io.StringIO, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(ready)!r}, 'w'); time.sleep(60)"
    )
    pool = WorkerPool(python(code), 1, stop_timeout=0.5)
    pool.install_signal_handlers()

    def stop_once_ignoring() -> None:
        wait_until(ready.exists, "the worker to ignore SIGTERM", timeout=WAIT)
        pool.request_stop(signal.SIGTERM)  # what the SIGTERM handler does

    stopper = threading.Thread(target=stop_once_ignoring)
    stopper.start()
    try:
        assert pool.run() == EXIT_GAVE_UP
    finally:
        stopper.join()

    [killed] = log_events(logs, "workers.killed")
    [stopped] = log_events(logs, "workers.stopped")
    assert list(stopped["exit_codes"].values()) == [-signal.SIGKILL]
    assert killed["pids"] == [int(pid) for pid in stopped["exit_codes"]]


def test_each_worker_runs_run_py_serve_with_the_settings_and_a_shared_port() -> None:
    command = worker_command("/etc/tars/settings.toml", python="/usr/bin/python3")
    assert command[0] == "/usr/bin/python3"
    assert command[1].endswith("run.py")
    assert command[2:] == ["--settings", "/etc/tars/settings.toml", "serve", "--reuse-port"]


# -- two real workers on PostgreSQL ---------------------------------------------------------------


def test_two_workers_share_one_port_answer_in_turn_take_a_call_and_reload(pg_rig: Rig) -> None:
    workers, port = start_workers(pg_rig)
    try:
        started = workers.events("daemon.started")
        assert [s["port"] for s in started] == [port, port]
        pids = {int(s["pid"]) for s in started}
        assert len(pids) == 2
        assert workers.process.pid not in pids  # the parent serves nothing itself
        assert set(workers.wait_for_event("workers.started", timeout=WAIT)["pids"]) == pids
        assert all(s["reuse_port"] for s in workers.events("server.listening"))

        # The kernel spreads fresh connections over both.
        assert answering_pids(port, pids) == pids

        phone = pg_rig.phone(port, OWNER)
        phone.call()
        phone.wait_for_mark("turn-1", timeout=WAIT)
        phone.hang_up()

        # A reload reaches every worker.
        workers.process.send_signal(signal.SIGHUP)
        assert set(workers.wait_for_event("workers.reloading", timeout=WAIT)["pids"]) == pids
        workers.wait_for_event("settings.reload_unchanged", timeout=WAIT, count=2)
    finally:
        workers.stop()
    assert workers.process.returncode == EXIT_OK


def test_a_killed_worker_is_started_again_and_sigterm_stops_them_all(pg_rig: Rig) -> None:
    workers, port = start_workers(pg_rig)
    try:
        killed, survivor = workers.pids
        os.kill(killed, signal.SIGKILL)
        died = workers.wait_for_event("workers.died", timeout=WAIT)
        assert (died["pid"], died["exit_code"], died["signal"]) == (killed, -9, "SIGKILL")
        # Meanwhile the other one serves every connection.
        for _ in range(10):
            status, figures = health(port)
            assert status == 200
            assert figures["pid"] != killed

        restarted = workers.wait_for_event("workers.restarted", timeout=WAIT)
        assert restarted["previous_pid"] == killed
        third = workers.wait_for_event("daemon.started", timeout=WAIT, count=3)
        assert third["pid"] == restarted["pid"]
        assert third["pid"] not in (killed, survivor)
        assert third["port"] == port
        assert answering_pids(port, {survivor, third["pid"]}) == {survivor, third["pid"]}

        workers.process.send_signal(signal.SIGTERM)
        assert workers.process.wait(timeout=WAIT * 2) == EXIT_OK
    finally:
        workers.stop()
    stopping = workers.wait_for_event("workers.stopping", timeout=WAIT)
    assert (stopping["signal"], set(stopping["pids"])) == ("SIGTERM", {survivor, third["pid"]})
    stopped = workers.wait_for_event("workers.stopped", timeout=WAIT)
    assert stopped["exit_codes"] == {str(survivor): 0, str(third["pid"]): 0}
    assert len(workers.events("daemon.stopped")) == 2


def test_the_load_benchmark_measures_tars_run_as_two_workers() -> None:
    from tars_actors.ops.load import render_table, run_load

    result = run_load(calls=4, seconds=1.0, warmup=0.5, workers=2)

    assert result.workers == 2
    assert result.frames_sent > 0
    # Whichever worker a call's stream reached, its audio went through and came back.
    assert (result.frames_lost_inbound, result.frames_lost_outbound) == (0, 0)
    assert result.protocol_violations == 0
    assert result.server_cpu_ms_per_call_second > 0
    rows = [line.rsplit(maxsplit=1) for line in render_table(result).splitlines()]
    assert ["TARS workers (figures summed)", "2"] in rows
