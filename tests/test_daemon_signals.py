"""``python run.py`` as a service manager drives it: SIGTERM drains and ends live calls with a
spoken notice and exits 0; SIGHUP reloads the settings that may change live, and refuses a
broken file without changing anything."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tars_actors.daemon.lifecycle import RESTART_NOTICE
from tars_actors.sim.gemini import LiveConnection
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.twilio_api import Operation
from tests.rig import OWNER, WAIT, Rig

STRANGER = "+15555550777"


def answered(rig: Rig, port: int, number: str, index: int) -> tuple[SyncSoftphone, LiveConnection]:
    phone = rig.phone(port, number)
    phone.call()
    model = rig.gemini.wait_for_connection(index, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    return phone, model


def test_sigterm_with_two_live_calls_ends_both_with_a_notice_and_exits_0(tmp_path: Path) -> None:
    with Rig(tmp_path, extra={"sessions": {"shutdown_grace_seconds": 0.5}}) as rig:
        daemon, port = rig.daemon()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT) as ready:
            assert json.loads(ready.read())["ready"] is True
        first, _ = answered(rig, port, OWNER, 1)
        second, _ = answered(rig, port, STRANGER, 2)

        daemon.process.send_signal(signal.SIGTERM)
        draining = daemon.wait_for_event("daemon.draining", timeout=WAIT)
        assert draining["live_calls"] == 2
        # Not ready any more, for the load balancer or the service manager.
        with pytest.raises(urllib.error.HTTPError) as unready:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT)
        assert unready.value.code == 503
        assert json.loads(unready.value.read())["ready"] is False
        # A call arriving now is told TARS is restarting, and hung up.
        late = rig.phone(port, "+15555550111").dial()
        assert late.stream is None
        assert late.hangup
        assert any("restarting" in text for text in late.says)

        assert daemon.process.wait(timeout=60) == 0
        # Each call heard the notice: Twilio was told to speak it and hang up.
        updates = rig.twilio.requests_for(Operation.CALLS_UPDATE)
        noticed = {
            request.path.rsplit("/", 1)[-1].removesuffix(".json")
            for request in updates
            if RESTART_NOTICE in (request.param("Twiml") or "")
        }
        assert noticed == {first.call_sid, second.call_sid}
        assert [(s.status, s.end_reason) for s in rig.sessions()] == [
            ("ended", "shutdown"),
            ("ended", "shutdown"),
        ]
        assert len(daemon.events("call.summary")) == 2
        assert daemon.events("daemon.stopped")


def test_sighup_applies_a_new_log_level_and_refuses_a_broken_file(rig: Rig) -> None:
    daemon, port = rig.daemon()
    try:
        rig.rewrite_settings({"logging": {"level": "warning"}, "assistant": {"language": "de-DE"}})
        daemon.process.send_signal(signal.SIGHUP)
        reloaded = daemon.wait_for_event("settings.reloaded", timeout=WAIT)
        assert reloaded["changed"] == {
            "logging.level": {"from": "info", "to": "warning"},
            "assistant.language": {"from": "en-US", "to": "de-DE"},
        }
        assert reloaded["needs_restart"] == []

        good = rig.settings.read_text(encoding="utf-8")
        rig.settings.write_text(good + "[sessions]\nmax_concurent = 3\n", encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        rejected = daemon.wait_for_event("settings.reload_rejected", timeout=WAIT)
        assert any("max_concurent" in problem for problem in rejected["problems"])

        # Nothing of the broken file was applied, and the reloaded settings still hold:
        # new calls are greeted in German, and info lines (call.started) are no longer logged.
        phone, model = answered(rig, port, OWNER, 1)
        assert "de-DE" in model.client_contents[0].text
        # ...and the model connection's own speech settings follow the new language too.
        assert '"de-DE"' in json.dumps(model.setup)
        phone.hang_up()
        assert daemon.process.poll() is None
        assert daemon.events("call.started") == []
    finally:
        daemon.stop()
    assert daemon.process.returncode == 0
