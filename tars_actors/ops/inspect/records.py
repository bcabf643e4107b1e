"""Reading one line of a TARS log: the JSON record, and its fields read defensively.

Wrong-typed fields read as missing, so no line can break the view.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Record",
    "actor_key",
    "field_ident",
    "field_int",
    "field_number",
    "field_text",
    "parse_line",
    "record_level",
    "record_time",
]

Record = dict[str, Any]


def parse_line(line: str) -> Record | None:
    """The JSON object on ``line``, or None unless it is an object with a string event."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    event = value.get("event")
    if not isinstance(event, str) or not event:
        return None
    return value


def field_text(record: Record, key: str) -> str | None:
    """A non-empty string field."""
    value = record.get(key)
    return value if isinstance(value, str) and value else None


def field_int(record: Record, key: str) -> int | None:
    """An integer field (a bool is not one)."""
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def field_number(record: Record, key: str) -> float | None:
    """A finite number field, as a float."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def field_ident(record: Record, key: str) -> str | None:
    """An id field: a non-empty string, or an integer written as one."""
    number = field_int(record, key)
    return str(number) if number is not None else field_text(record, key)


def record_time(record: Record) -> datetime | None:
    """The ``timestamp`` as an aware datetime (UTC when it names no zone)."""
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def record_level(record: Record) -> str:
    """The level in lower case; ``info`` when missing."""
    level = record.get("level")
    return level.lower() if isinstance(level, str) and level else "info"


def actor_key(record: Record) -> tuple[str, str, str, str | None] | None:
    """(key, kind, actor id, call SID) of the actor that wrote ``record``, if any.

    Per-call actors other than the CallSession (the model connections, ``model-1``...)
    reuse their ids in every call, so their key is qualified by the call SID.
    """
    kind = field_text(record, "actor")
    actor_id = field_ident(record, "actor_id")
    if kind is None or actor_id is None:
        return None
    call_sid = field_text(record, "call_sid")
    if call_sid is not None and call_sid != actor_id and "session" in record:
        return f"{call_sid}/{actor_id}", kind, actor_id, call_sid
    return actor_id, kind, actor_id, None
