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
    assert "Call with Máté Dort (main): call from +15555550100 (owner)" in out
    assert "Call with +15555550777: call from +15555550777 (unknown)" in out
    assert "Call with Máté Dort (main) | caller: What is on today?" in out
    assert "Hey, this is Máté Dort's assistant TARS, how can I help you?" in out
    database = next(line for line in out.splitlines() if line.startswith("Database: "))
    assert Path(database.removeprefix("Database: sqlite:///")).is_file()
    log = next(line for line in out.splitlines() if line.startswith("Log (JSON lines): "))
    assert Path(log.removeprefix("Log (JSON lines): ")).stat().st_size > 0
