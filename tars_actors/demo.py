"""`python run.py demo`: whole calls through the real server and actors, on 127.0.0.1.

No account or credential is needed: the Gemini Live and Twilio REST stand-ins play the
cloud, and softphones play the callers, speaking Twilio's exact Media Streams protocol.
The demo prints a timeline of what happened and where its database and log are.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from tars_actors.log import configure_logging
from tars_actors.sim.gemini_live import ScriptedReply, tone
from tars_actors.sim.world import OWNER_PHONE, LocalWorld
from tars_actors.store import AgentSession, Conversation
from tars_actors.supervision import SupervisorEvent

__all__ = ["main", "run_demo"]

WAIT = 15.0
STRANGER = "+15555550777"

#: Log events worth a line in the timeline, and how to say them.
_TIMELINE_EVENTS = {
    "daemon.started": "TARS is up on port {port}",
    "server.call_admitted": "Twilio's webhook for {call_sid} answered with a media stream",
    "call.started": "{session}: call from {caller} ({permission})",
    "model.connected": "{session}: model connection {connection_id} ready",
    "call.summary": "{session}: call ended ({reason}), {turns} model turn(s), "
    "{duration_seconds:.1f} s",
}


def run_demo(directory: Path, out: TextIO) -> int:
    log_path = directory / "tars.log"
    with log_path.open("w", encoding="utf-8") as log_stream:
        configure_logging(level="info", format="json", stream=log_stream)
        with LocalWorld(directory=directory) as world:
            assert world.daemon is not None
            events = world.daemon.events

            def ended(call_sid: str) -> Any:
                return events.subscribe(
                    lambda e: (
                        isinstance(e, SupervisorEvent)
                        and e.event == "supervisor.child_exited"
                        and e.child_id == call_sid
                    )
                )

            # The owner calls in and is greeted.
            owner = world.phone(OWNER_PHONE)
            owner.call()
            owner_model = world.gemini.wait_for_connection(1, timeout=WAIT)
            owner.wait_for_mark("turn-1", timeout=WAIT)
            owner_model.send_input_transcription("What is on today?")
            owner_model.reply(
                ScriptedReply(
                    transcript="Nothing urgent; your afternoon is free.", audio=tone(330.0, 0.6)
                )
            )
            owner.wait_for_mark("turn-2", timeout=WAIT)

            # An unknown caller rings while the owner is on the line.
            stranger = world.phone(STRANGER)
            stranger.call()
            stranger_model = world.gemini.wait_for_connection(2, timeout=WAIT)
            stranger.wait_for_mark("turn-1", timeout=WAIT)
            stranger_ended = ended(stranger.call_sid)
            stranger.hang_up()
            stranger_ended.wait_for(lambda e: True, timeout=WAIT)

            owner_ended = ended(owner.call_sid)
            owner.hang_up()
            owner_ended.wait_for(lambda e: True, timeout=WAIT)
            store = world.daemon.store
            assert store is not None
            with store.connection():
                transcript = [
                    (str(session.name), str(line.speaker), str(line.text), bool(line.heard))
                    for session in AgentSession.select().order_by(AgentSession.id)
                    for line in Conversation.select()
                    .where(Conversation.session == session)
                    .order_by(Conversation.seq)
                ]
            database = world.settings.database.url if world.settings else ""
            greeting = (
                stranger_model.client_contents[0].text if stranger_model.client_contents else ""
            )
    _print_timeline(out, log_path)
    print("\nWhat was said:", file=out)
    for session, speaker, text, heard in transcript:
        print(f"  {session} | {speaker}: {text}{'' if heard else ' (cut off)'}", file=out)
    print(f"\nThe unknown caller's greeting instruction: {greeting}", file=out)
    print(f"\nDatabase: {database}", file=out)
    print(f"Log (JSON lines): {log_path}", file=out)
    return 0


def _print_timeline(out: TextIO, log_path: Path) -> None:
    print("Timeline:", file=out)
    first: float | None = None
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        template = _TIMELINE_EVENTS.get(record.get("event", ""))
        if template is None or (
            # Both ends of a model connection log it; the session's line says enough.
            record.get("event") == "model.connected" and record.get("actor") != "CallSession"
        ):
            continue
        stamp = _seconds(record.get("timestamp", ""))
        if first is None:
            first = stamp
        try:
            text = template.format(**record)
        except (KeyError, ValueError):
            text = str(record.get("event"))
        print(f"  [{stamp - first:6.2f}s] {text}", file=out)


def _seconds(timestamp: str) -> float:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def main(argv: Sequence[str], *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    keep = Path(tempfile.mkdtemp(prefix="tars-demo-"))
    return run_demo(keep, out)
