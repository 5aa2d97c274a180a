"""Turn a webhook JSON object into a validated Update, or an error naming the field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from store.catalog import Catalog, UnknownRow
from store.models import Status, Update, parse_status

KNOWN_FIELDS = ("app", "domain", "status", "job_id", "message", "timestamp", "source")
MAX_NAME_LENGTH = 64
MAX_JOB_ID_LENGTH = 64
MAX_MESSAGE_LENGTH = 2000
MAX_CLOCK_SKEW = timedelta(minutes=5)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ACCEPTED = ", ".join(s.value for s in Status)
_SPELLINGS = "running, processing, in progress, success, completed, failed, ..."


class ValidationProblem(ValueError):
    """An invalid field, with a stable code for clients and the HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        value: Any = None,
        status: int = 422,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.value = value
        self.status = status

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, str) and len(value) > 200:
            value = value[:200] + "…"
        return {
            "code": self.code,
            "message": self.message,
            "field": self.field,
            "value": value if _is_json_scalar(value) else repr(value)[:200],
        }


@dataclass
class ParsedUpdate:
    update: Update
    ignored_fields: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_update(
    payload: object,
    catalog: Catalog,
    received_at: datetime,
    prefix: str = "",
) -> ParsedUpdate:
    """Validate one status object. ``prefix`` names its place in a batch.

    Raises ValidationProblem for the first invalid field.
    """
    if not isinstance(payload, dict):
        raise ValidationProblem(
            "invalid_type",
            f"{prefix or 'body'} must be a JSON object with app, domain and status",
            prefix or None,
            payload,
        )
    notes: list[str] = []
    app = _name(payload, "app", prefix)
    domain = _name(payload, "domain", prefix)
    try:
        app, domain = catalog.resolve(app, domain)
    except UnknownRow as exc:
        raise ValidationProblem(
            f"unknown_{exc.field}", str(exc), prefix + exc.field, exc.value
        ) from exc

    status = _status(payload, prefix)
    job_id = _job_id(payload, prefix)
    message = _message(payload, prefix, notes)
    timestamp = _timestamp(payload, prefix, received_at, notes)
    source = payload.get("source")
    if source is not None and not isinstance(source, str):
        raise ValidationProblem(
            "invalid_type",
            f"{prefix}source must be a string such as 'data_integration'",
            prefix + "source",
            source,
        )
    ignored = sorted(prefix + key for key in payload if key not in KNOWN_FIELDS)
    update = Update(
        app=app,
        domain=domain,
        status=status,
        received_at=received_at,
        timestamp=timestamp,
        job_id=job_id,
        message=message,
        source=source or "webhook",
    )
    return ParsedUpdate(update, ignored, notes)


def _name(payload: dict[str, Any], key: str, prefix: str) -> str:
    value = payload.get(key)
    where = prefix + key
    if value is None:
        raise ValidationProblem(
            "missing_field",
            f"{where} is missing: send the EPM {key} name, e.g. "
            + ('"Planning"' if key == "app" else '"Actual"'),
            where,
        )
    if not isinstance(value, str):
        raise ValidationProblem(
            "invalid_type", f"{where} must be a string", where, value
        )
    value = value.strip()
    if not value:
        raise ValidationProblem(
            "invalid_value", f"{where} is empty: send a name", where, value
        )
    if len(value) > MAX_NAME_LENGTH or _CONTROL.search(value):
        raise ValidationProblem(
            "invalid_value",
            f"{where} must be at most {MAX_NAME_LENGTH} characters without line "
            "breaks or control characters",
            where,
            value,
        )
    return value


def _status(payload: dict[str, Any], prefix: str) -> Status:
    value = payload.get("status")
    where = prefix + "status"
    if value is None:
        raise ValidationProblem(
            "missing_field",
            f"{where} is missing: send one of {_ACCEPTED}",
            where,
        )
    status = parse_status(value) if isinstance(value, str) else None
    if status is None:
        raise ValidationProblem(
            "invalid_status",
            f"{where} {value!r} is not a known status. Send one of {_ACCEPTED} "
            f"(common spellings such as {_SPELLINGS} are accepted too)",
            where,
            value,
        )
    return status


def _job_id(payload: dict[str, Any], prefix: str) -> str | None:
    value = payload.get("job_id")
    where = prefix + "job_id"
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationProblem(
            "invalid_type", f"{where} must be a string or a number", where, value
        )
    text = str(value).strip()
    if len(text) > MAX_JOB_ID_LENGTH or _CONTROL.search(text):
        raise ValidationProblem(
            "invalid_value",
            f"{where} must be at most {MAX_JOB_ID_LENGTH} characters without line "
            "breaks",
            where,
            value,
        )
    return text or None


def _message(payload: dict[str, Any], prefix: str, notes: list[str]) -> str | None:
    value = payload.get("message")
    where = prefix + "message"
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationProblem(
            "invalid_type", f"{where} must be a string", where, value
        )
    value = value.strip()
    if len(value) > MAX_MESSAGE_LENGTH:
        notes.append(f"{where} was cut to {MAX_MESSAGE_LENGTH} characters")
        value = value[:MAX_MESSAGE_LENGTH]
    return value or None


def _timestamp(
    payload: dict[str, Any], prefix: str, received_at: datetime, notes: list[str]
) -> datetime:
    value = payload.get("timestamp")
    where = prefix + "timestamp"
    if value is None or value == "":
        return received_at
    if not isinstance(value, str):
        raise ValidationProblem(
            "invalid_timestamp",
            f"{where} must be an ISO 8601 string such as 2026-12-04T17:20:00Z",
            where,
            value,
        )
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValidationProblem(
            "invalid_timestamp",
            f"{where} {value!r} is not ISO 8601. Send e.g. 2026-12-04T17:20:00Z "
            "(no zone means UTC)",
            where,
            value,
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError as exc:
        # A time at the edge of year 1 or 9999 whose offset moves it out of range.
        raise ValidationProblem(
            "invalid_timestamp",
            f"{where} {value!r} is out of range. Send the time of the job, e.g. "
            "2026-12-04T17:20:00Z",
            where,
            value,
        ) from exc
    if parsed - received_at > MAX_CLOCK_SKEW:
        notes.append(
            f"{where} {value!r} is more than 5 minutes in the future; the time "
            "received was stored instead. Check the clock of the sender."
        )
        return received_at
    return parsed


def _is_json_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
