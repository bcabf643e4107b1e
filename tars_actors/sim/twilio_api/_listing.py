"""Listing calls and messages as Twilio does: filters, newest first, one page at a time.

Filters (exact as Twilio documents them for ``GET …/Messages.json`` and ``GET …/Calls.json``):
``To`` and ``From`` match exactly; ``Status`` (calls) matches exactly; the date filters
``DateSent`` (messages), ``StartTime`` and ``EndTime`` (calls) compare whole UTC days: ``X=D``
keeps what happened on day D, ``X>=D`` (the parameter is named ``X>``) on or after the start of
D, ``X<=D`` (named ``X<``) on or before the end of D. A value may be ``YYYY-MM-DD`` or a
timestamp (twilio-python sends ``YYYY-MM-DDTHH:MM:SSZ``); only its UTC day counts. A record
without the date (a message not sent yet, a call not answered yet) never matches such a filter.

Pages: ``PageSize`` (default 50, at most 1000), ``Page`` (a page number, used as an offset when
there is no token) and ``PageToken`` (``PA<sid>``: the records after ``sid``; ``PB<sid>``: the
ones before it). ``next_page_uri`` carries the filters and a ``PA`` token, so records created
while a client pages do not shift the pages it has yet to read.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from tars_actors.sim.twilio_api._records import CallRecord, MessageRecord
from tars_actors.sim.twilio_api._requests import Params, RestError

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "call_filter", "list_page", "message_filter"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_PAGING = frozenset({"PageSize", "Page", "PageToken"})

R = TypeVar("R", CallRecord, MessageRecord)
_DayTest = Callable[[datetime | None], bool]


def message_filter(params: Params) -> Callable[[MessageRecord], bool]:
    """What ``To``, ``From`` and ``DateSent`` (``<``, ``>``) keep of the messages."""
    to, from_ = params.get("To"), params.get("From")
    sent = _day_test(params, "DateSent")

    def keep(message: MessageRecord) -> bool:
        return (
            (to is None or message.to == to)
            and (from_ is None or message.from_ == from_)
            and sent(message.date_sent)
        )

    return keep


def call_filter(params: Params) -> Callable[[CallRecord], bool]:
    """What ``To``, ``From``, ``Status``, ``ParentCallSid``, ``StartTime`` and ``EndTime`` keep."""
    to, from_, status = params.get("To"), params.get("From"), params.get("Status")
    parent = params.get("ParentCallSid")
    started = _day_test(params, "StartTime")
    ended = _day_test(params, "EndTime")

    def keep(call: CallRecord) -> bool:
        return (
            (to is None or call.to == to)
            and (from_ is None or call.from_ == from_)
            and (status is None or call.status == status)
            and parent is None  # the stand-in's calls are all parents
            and started(call.started_at)
            and ended(call.ended_at)
        )

    return keep


def _day_test(params: Params, name: str) -> _DayTest:
    """The whole-UTC-day test of the ``name``, ``name>`` and ``name<`` parameters."""
    first: date | None = None
    last: date | None = None
    for key, value in params.pairs:
        if key not in (name, name + ">", name + "<"):
            continue
        day = _utc_day(key, value)
        if key != name + "<":
            first = day if first is None else max(first, day)
        if key != name + ">":
            last = day if last is None else min(last, day)
    if first is None and last is None:
        return lambda _moment: True

    def test(moment: datetime | None) -> bool:
        if moment is None:
            return False
        day = moment.astimezone(UTC).date()
        return (first is None or first <= day) and (last is None or day <= last)

    return test


def _utc_day(name: str, value: str) -> date:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RestError(400, 20001, f"Invalid value for {name}: {value}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.date()


def list_page(
    records: Sequence[R],
    *,
    key: str,
    path: str,
    params: Params,
    keep: Callable[[R], bool],
    to_json: Callable[[R], dict[str, Any]],
) -> dict[str, Any]:
    """The page of ``records`` (in creation order) that ``params`` ask for, as Twilio's JSON.

    ``key`` names the list in the answer (``"messages"``, ``"calls"``), ``path`` is the
    request's path.
    """
    size = _page_size(params)
    number = _int_param(params, "Page", 0)
    # Newest first by date_created; among equal dates the one created later comes first.
    by_age = sorted(enumerate(records), key=lambda pair: (pair[1].created_at, pair[0]))
    ordered = [record for _, record in reversed(by_age)]
    rank = {record.sid: index for index, record in enumerate(ordered)}
    kept = [(index, record) for index, record in enumerate(ordered) if keep(record)]
    ranks = [index for index, _ in kept]
    token = params.get("PageToken")
    if token:
        if token[:2] not in ("PA", "PB") or token[2:] not in rank:
            raise RestError(400, 20001, f"Invalid PageToken: {token}")
        if token[:2] == "PA":
            start = bisect.bisect_right(ranks, rank[token[2:]])
            stop = start + size
        else:
            stop = bisect.bisect_left(ranks, rank[token[2:]])
            start = max(0, stop - size)
    else:
        start = number * size
        stop = start + size
    page = [record for _, record in kept[start:stop]]

    def uri(page_number: int, page_token: str | None) -> str:
        query = [pair for pair in params.pairs if pair[0] not in _PAGING]
        query += [("PageSize", str(size)), ("Page", str(page_number))]
        if page_token is not None:
            query.append(("PageToken", page_token))
        return f"{path}?{urlencode(query)}"

    has_next = bool(page) and start + len(page) < len(kept)
    has_previous = bool(page) and start > 0 and number > 0
    return {
        key: [to_json(record) for record in page],
        "end": number * size + max(len(page) - 1, 0),
        "first_page_uri": uri(0, None),
        "next_page_uri": uri(number + 1, "PA" + page[-1].sid) if has_next else None,
        "page": number,
        "page_size": size,
        "previous_page_uri": uri(number - 1, "PB" + page[0].sid) if has_previous else None,
        "start": number * size,
        "uri": uri(number, token or None),
    }


def _page_size(params: Params) -> int:
    size = _int_param(params, "PageSize", DEFAULT_PAGE_SIZE)
    if size < 1:
        raise RestError(400, 20001, f"Invalid PageSize: {size}")
    return min(size, MAX_PAGE_SIZE)


def _int_param(params: Params, name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise RestError(400, 20001, f"Invalid {name}: {value}") from None
    if number < 0:
        raise RestError(400, 20001, f"Invalid {name}: {value}")
    return number
