"""The JSON Twilio answers for calls, messages and phone numbers, built from the records."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Any

from tars_actors.sim.twilio_api._records import (
    API_VERSION,
    CallRecord,
    MessageRecord,
    PhoneNumberRecord,
)

__all__ = ["call_json", "message_json", "number_json"]


def _rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def call_json(record: CallRecord) -> dict[str, Any]:
    created = _rfc2822(record.created_at)
    duration = record.duration
    return {
        "sid": record.sid,
        "account_sid": record.account_sid,
        "parent_call_sid": None,
        "to": record.to,
        "to_formatted": record.to,
        "from": record.from_,
        "from_formatted": record.from_,
        "phone_number_sid": None,
        "status": record.status,
        "date_created": created,
        "date_updated": _rfc2822(record.ended_at or record.started_at) or created,
        "start_time": _rfc2822(record.started_at),
        "end_time": _rfc2822(record.ended_at),
        "duration": None if duration is None else str(duration),
        "price": None,
        "price_unit": "USD",
        "direction": record.direction,
        "answered_by": record.answered_by,
        "api_version": API_VERSION,
        "forwarded_from": None,
        "group_sid": None,
        "caller_name": None,
        "queue_time": "0",
        "trunk_sid": None,
        "uri": f"/{API_VERSION}/Accounts/{record.account_sid}/Calls/{record.sid}.json",
    }


def number_json(record: PhoneNumberRecord) -> dict[str, Any]:
    return {
        "sid": record.sid,
        "account_sid": record.account_sid,
        "phone_number": record.phone_number,
        "friendly_name": record.friendly_name,
        "voice_url": record.voice_url,
        "voice_method": record.voice_method,
        "status_callback": record.status_callback,
        "status_callback_method": record.status_callback_method,
        "capabilities": {"voice": True, "sms": True, "mms": False, "fax": False},
        "api_version": API_VERSION,
        "status": "in-use",
        "origin": "twilio",
        "uri": (
            f"/{API_VERSION}/Accounts/{record.account_sid}/IncomingPhoneNumbers/{record.sid}.json"
        ),
    }


def message_json(record: MessageRecord) -> dict[str, Any]:
    created = _rfc2822(record.created_at)
    return {
        "sid": record.sid,
        "account_sid": record.account_sid,
        "to": record.to,
        "from": record.from_,
        "body": record.body,
        "status": record.status,
        "direction": "outbound-api",
        "num_segments": "1",
        "num_media": "0",
        "date_created": created,
        "date_updated": _rfc2822(record.date_sent) or created,
        "date_sent": _rfc2822(record.date_sent),
        "error_code": None,
        "error_message": None,
        "price": None,
        "price_unit": "USD",
        "api_version": API_VERSION,
        "messaging_service_sid": None,
        "uri": f"/{API_VERSION}/Accounts/{record.account_sid}/Messages/{record.sid}.json",
    }
