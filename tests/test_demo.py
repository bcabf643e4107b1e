"""The README's first command: `python run.py demo` on a machine with no accounts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_runs_whole_calls_and_exits_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARS_", "TWILIO_", "GEMINI_"))}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    # 1. The owner calls in and is greeted.
    assert "Call with Máté Dort (main): call from +15555550100 (owner)" in out
    assert 'Call with Máté Dort (main): TARS: "Hi Máté, TARS here.' in out
    # 2. An unknown caller rings, the owner is told, the message reaches the owner's call.
    assert "Call with +15555550777: call from +15555550777 (unknown)" in out
    assert '"Incoming call from Call with +15555550777" (delivered)' in out
    assert (
        "from Call with +15555550777 to the owner: "
        '"The parcel has arrived. (The caller gave their name as Anna.)" (delivered)' in out
    )
    assert 'Call with Máté Dort (main): TARS: "Anna says your parcel has arrived."' in out
    # 3. A reminder comes due during the call and is announced in it.
    assert "reminder 1 delivered (announced_in_call)" in out
    assert '"Reminder: Stretch your legs" (delivered)' in out
    # 4. A goal call runs, and its report reaches the owner's call.
    assert "Goal call with Dr Smith's office: call from +15555550444 (goal)" in out
    assert "goal 1 ended: completed" in out
    assert "The check-up with Dr Smith is booked for Tuesday at 10:00" in out
    [report] = [line for line in out.splitlines() if "Goal call to Dr Smith's office" in line]
    assert report.endswith("(delivered)")
    # Where to look next.
    database = next(line for line in out.splitlines() if line.startswith("Database: "))
    assert Path(database.removeprefix("Database: sqlite:///")).is_file()
    log = next(line for line in out.splitlines() if line.startswith("Log (JSON lines): "))
    assert Path(log.removeprefix("Log (JSON lines): ")).stat().st_size > 0
