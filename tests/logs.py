"""Reading the JSON log lines a test produced (the ``logs`` fixture of conftest.py)."""

from __future__ import annotations

import io
import json
from typing import Any


def log_events(logs: io.StringIO, event: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    return [r for r in records if r.get("event") == event]
