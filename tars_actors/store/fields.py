"""Column types the store needs beyond peewee's: UTC instants, closed vocabularies, E.164 numbers.

Each behaves the same on SQLite and PostgreSQL, so a model never needs backend-specific SQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import peewee

__all__ = ["E164_PATTERN", "ChoiceField", "PhoneField", "UTCDateTimeField", "utcnow"]

#: ITU-T E.164 as Twilio writes it: a plus sign and at most 15 digits, no leading zero.
E164_PATTERN = re.compile(r"\+[1-9]\d{1,14}")


_V = TypeVar("_V")
_E = TypeVar("_E", bound=StrEnum)

if TYPE_CHECKING:
    _DateTimeField = peewee.DateTimeField
    _CharField = peewee.CharField
else:
    # peewee's stubs make each field generic in the Python type it holds, so a model's
    # `row.ended_at` is typed `datetime | None`; at run time its fields are plain classes,
    # and Generic makes the subclasses below subscriptable there too.
    class _DateTimeField(peewee.DateTimeField, Generic[_V]):
        pass

    class _CharField(peewee.CharField, Generic[_V]):
        pass


def utcnow() -> datetime:
    """The current instant as a timezone-aware UTC datetime (what every time column holds)."""
    return datetime.now(UTC)


def _field_label(field: peewee.Field) -> str:
    model = getattr(field, "model", None)
    table = model._meta.table_name if model is not None else "?"
    return f"{table}.{getattr(field, 'column_name', None) or '?'}"


def _is_sqlite(field: peewee.Field) -> bool:
    model = getattr(field, "model", None)
    database = model._meta.database if model is not None else None
    return isinstance(database, peewee.SqliteDatabase)


class UTCDateTimeField(_DateTimeField[_V]):
    """An instant, stored as UTC without an offset and read back as an aware UTC datetime.

    Storing a fixed-width UTC text on SQLite (``YYYY-MM-DD HH:MM:SS.ffffff``) keeps ``<``
    and ``ORDER BY`` correct there, where datetimes are compared as strings; PostgreSQL gets
    a ``TIMESTAMP`` holding UTC, so the session's ``TimeZone`` never shifts a value. A naive
    datetime is refused on write: guessing its zone is how reminders end up an hour off.
    """

    @overload
    def __init__(
        self: UTCDateTimeField[datetime | None], *, null: Literal[True], **kwargs: Any
    ) -> None: ...
    @overload
    def __init__(
        self: UTCDateTimeField[datetime], *, null: Literal[False] = ..., **kwargs: Any
    ) -> None: ...
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"{_field_label(self)}: expected a datetime, got {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{_field_label(self)}: naive datetime {value.isoformat()} has no time zone; "
                "pass an aware datetime (e.g. utcnow())"
            )
        naive_utc = value.astimezone(UTC).replace(tzinfo=None)
        if _is_sqlite(self):
            return naive_utc.isoformat(sep=" ", timespec="microseconds")
        return naive_utc

    def python_value(self, value: Any) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
        if not isinstance(parsed, datetime):
            raise TypeError(f"{_field_label(self)}: cannot read {value!r} as a datetime")
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


class ChoiceField(_CharField[_V]):
    """Text restricted to the values of a :class:`~enum.StrEnum`, read back as its members.

    The vocabulary is checked in Python rather than with a ``CHECK`` constraint, so a later
    issue can add a status without a table rebuild on SQLite. Members are ``str``, so
    ``row.status == "active"`` keeps working for callers that compare with plain text.
    """

    @overload
    def __init__(
        self: ChoiceField[_E | None], enum: type[_E], *, null: Literal[True], **kwargs: Any
    ) -> None: ...
    @overload
    def __init__(
        self: ChoiceField[_E], enum: type[_E], *, null: Literal[False] = ..., **kwargs: Any
    ) -> None: ...
    def __init__(self, enum: type[StrEnum], **kwargs: Any) -> None:
        self.enum = enum
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def _member(self, value: Any) -> StrEnum:
        try:
            return self.enum(value)
        except ValueError:
            allowed = "|".join(member.value for member in self.enum)
            raise ValueError(f"{_field_label(self)}: {value!r} is not one of {allowed}") from None

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return self._member(value).value

    def python_value(self, value: Any) -> StrEnum | None:
        if value is None:
            return None
        return self._member(value)


class PhoneField(_CharField[_V]):
    """A phone number TARS dials or texts, which must be E.164 (``+`` and up to 15 digits).

    Checked when a row is saved (:meth:`check`, called by the models' ``save``), not in
    ``db_value``: that also runs for lookups, and looking up a caller ID such as
    ``Anonymous`` must find nothing rather than raise.
    """

    @overload
    def __init__(self: PhoneField[str | None], *, null: Literal[True], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: PhoneField[str], *, null: Literal[False] = ..., **kwargs: Any) -> None: ...
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 16)
        super().__init__(**kwargs)

    def check(self, value: Any) -> None:
        """Raise ValueError naming the column unless ``value`` is None or E.164."""
        if value is None and self.null:
            return
        if not isinstance(value, str) or E164_PATTERN.fullmatch(value) is None:
            raise ValueError(
                f"{_field_label(self)}: {value!r} is not an E.164 phone number (e.g. +15551234567)"
            )
