"""Turn a webhook JSON object into a validated Update, or an error naming the field."""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from store.catalog import Catalog, UnknownRow
from store.models import (
    PULL_SOURCE,
    STATUS_SPELLINGS,
    Status,
    Update,
    parse_status,
)

KNOWN_FIELDS = ("app", "domain", "status", "job_id", "message", "timestamp", "source")
_KNOWN = frozenset(KNOWN_FIELDS)
MAX_NAME_LENGTH = 64
MAX_JOB_ID_LENGTH = 64
MAX_MESSAGE_LENGTH = 2000
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Maximum length of a value as shown in an error body. Longer text is cut.
MAX_ERROR_VALUE_LENGTH = 200

# Control (Cc) and format (Cf: zero-width, bidi overrides, BOM) characters, and line
# and paragraph separators. Format characters are invisible, so "Plan\u200bning"
# would look like "Planning" on the board but be a row of its own.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_ACCEPTED = ", ".join(s.value for s in Status)
_COMMON_SPELLINGS = "; ".join(
    f"{', '.join(s for s in spellings if s != status.value.casefold())} ({status})"
    for status, spellings in STATUS_SPELLINGS.items()
)


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
        return {
            "code": self.code,
            "message": self.message,
            "field": self.field,
            "value": error_value(self.value),
        }


def error_value(value: Any) -> str | int | float | bool | None:
    """Return ``value`` as a JSON scalar for an error body.

    Objects and arrays become their JSON text, and that text, a long string or a
    long integer is cut to MAX_ERROR_VALUE_LENGTH characters with "…" added.
    A non-finite float, which JSON cannot hold, becomes the text "NaN",
    "Infinity" or "-Infinity".
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else json.dumps(value)
    if isinstance(value, int):
        text = str(value)
        return value if len(text) <= MAX_ERROR_VALUE_LENGTH else _cut(text)
    if isinstance(value, str):
        return _cut(value)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    except (ValueError, RecursionError):
        # NaN inside a structure, an integer past Python's digit limit, or nesting
        # too deep to encode: the type is all that can be shown safely.
        text = f"<{type(value).__name__}>"
    return _cut(text)


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_VALUE_LENGTH:
        return text
    return text[:MAX_ERROR_VALUE_LENGTH] + "…"


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
    """Validate one status object. ``prefix`` names its place in a batch, such as
    ``updates[3].``.

    Raises ValidationProblem for the first invalid field.
    """
    if not isinstance(payload, dict):
        place = prefix.removesuffix(".")
        raise ValidationProblem(
            "invalid_type",
            f"{place or 'the body'} must be a JSON object with app, domain and status",
            place or None,
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
    source = _source(payload, prefix)
    ignored: list[str] = []
    if not payload.keys() <= _KNOWN:
        unknown = sorted(key for key in payload if key not in _KNOWN)
        notes.extend(_variant_notes(payload, unknown, prefix))
        ignored = [prefix + key for key in unknown]
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


def _source(payload: dict[str, Any], prefix: str) -> str | None:
    value = payload.get("source")
    where = prefix + "source"
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationProblem(
            "invalid_type",
            f"{where} must be a string such as 'data_integration'",
            where,
            value,
        )
    text = value.strip()
    if len(text) > MAX_NAME_LENGTH:
        raise ValidationProblem(
            "invalid_value",
            f"{where} is {len(text)} characters long: send at most {MAX_NAME_LENGTH}",
            where,
            value,
        )
    if text.casefold() == PULL_SOURCE:
        # Pull mode does not follow a job whose update came from itself.
        raise ValidationProblem(
            "invalid_value",
            f"{where} '{PULL_SOURCE}' is kept for EPMPulse's own job polling: send "
            "another name, such as 'data_integration', or leave it out",
            where,
            value,
        )
    _check_visible(text, where, value)
    return text or None


def _fold_field_name(name: str) -> str:
    return name.replace("_", "").replace("-", "").replace(" ", "").casefold()


# A key that folds to one of these is a spelling of a known field, such as jobId,
# JobID or job-id for job_id (EPM's REST API calls it jobId) or time_stamp.
_FOLDED_FIELDS = {_fold_field_name(name): name for name in KNOWN_FIELDS}


def _variant_of(payload: dict[str, Any], key: str) -> str | None:
    """Return a key of ``payload`` that is a variant spelling of ``key``."""
    for name in payload:
        if name != key and _FOLDED_FIELDS.get(_fold_field_name(name)) == key:
            return str(name)
    return None


def _variant_notes(
    payload: dict[str, Any], ignored: list[str], prefix: str
) -> list[str]:
    # The variant is not read in place of the field: one spelling per field keeps
    # every client explicit, and a note in the response points at the fix.
    notes = []
    for name in ignored:
        known = _FOLDED_FIELDS.get(_fold_field_name(name))
        if known is not None and known not in payload:
            notes.append(
                f"{prefix}{name} was ignored: did you mean {known}? Field names "
                "are matched exactly."
            )
    return notes


def _missing(
    payload: dict[str, Any], key: str, prefix: str, fix: str
) -> ValidationProblem:
    where = prefix + key
    variant = _variant_of(payload, key)
    if variant is None:
        return ValidationProblem("missing_field", f"{where} is missing: {fix}", where)
    return ValidationProblem(
        "missing_field",
        f"{where} is missing, and {prefix}{variant} is not read: did you mean "
        f"{key}? Field names are matched exactly; rename {variant} to {key}.",
        where,
    )


def _name(payload: dict[str, Any], key: str, prefix: str) -> str:
    value = payload.get(key)
    where = prefix + key
    if value is None:
        example = '"Planning"' if key == "app" else '"Actual"'
        raise _missing(payload, key, prefix, f"send the EPM {key} name, e.g. {example}")
    if not isinstance(value, str):
        raise ValidationProblem(
            "invalid_type", f"{where} must be a string", where, value
        )
    # NFC, so that "é" sent precomposed or as "e" and a combining accent is one row.
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise ValidationProblem(
            "invalid_value", f"{where} is empty: send a name", where, value
        )
    if len(text) > MAX_NAME_LENGTH:
        raise ValidationProblem(
            "invalid_value",
            f"{where} is {len(text)} characters long: send at most {MAX_NAME_LENGTH}",
            where,
            value,
        )
    _check_visible(text, where, value)
    return text


def _check_visible(text: str, where: str, value: object) -> None:
    """Raise ValidationProblem when ``text`` contains a control character, an
    invisible format character or a line or paragraph separator."""
    if text.isascii() and text.isprintable():
        return  # The usual EPM name, checked without a lookup per character.
    for char in text:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            raise ValidationProblem(
                "invalid_value",
                f'{where} "{_escape_invisible(text)}" contains {_describe(char)}. '
                "Remove it where the EPM rule or script builds this value.",
                where,
                value,
            )


def _describe(char: str) -> str:
    code = f"U+{ord(char):04X}"
    category = unicodedata.category(char)
    if category == "Cc":
        return f"{code}, a control character, which cannot be shown"
    name = unicodedata.name(char, "")
    if category == "Cf":
        reason = "an invisible format character, so the value would look like another"
    else:
        reason = "a line break"
    return f"{code} {name}, {reason}" if name else f"{code}, {reason}"


def _escape_invisible(text: str) -> str:
    """Write each character that _check_visible rejects as a \\u or \\U escape."""
    parts = []
    for char in text:
        if unicodedata.category(char) not in _INVISIBLE_CATEGORIES:
            parts.append(char)
        elif ord(char) <= 0xFFFF:
            parts.append(f"\\u{ord(char):04x}")
        else:
            parts.append(f"\\U{ord(char):08x}")
    return "".join(parts)


def _status(payload: dict[str, Any], prefix: str) -> Status:
    value = payload.get("status")
    where = prefix + "status"
    if value is None:
        raise _missing(payload, "status", prefix, f"send one of {_ACCEPTED}")
    status = parse_status(value) if isinstance(value, str) else None
    if status is None:
        raise ValidationProblem(
            "invalid_status",
            f"{where} {error_value(value)!r} is not a known status. Send one of "
            f"{_ACCEPTED} (any case), or one of these common spellings: "
            f"{_COMMON_SPELLINGS}. Underscores and hyphens read as spaces.",
            where,
            value,
        )
    return status


def _job_id(payload: dict[str, Any], prefix: str) -> str | None:
    value = payload.get("job_id")
    where = prefix + "job_id"
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationProblem(
            "invalid_type", f"{where} must be a string or a number", where, value
        )
    text = unicodedata.normalize("NFC", str(value).strip())
    if len(text) > MAX_JOB_ID_LENGTH:
        raise ValidationProblem(
            "invalid_value",
            f"{where} is longer than {MAX_JOB_ID_LENGTH} characters: send the EPM "
            "job id",
            where,
            value,
        )
    _check_visible(text, where, value)
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
