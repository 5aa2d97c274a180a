"""Webhook payload validation: statuses, fields, timestamps and apps.json names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handlers.validation import (
    MAX_MESSAGE_LENGTH,
    ParsedUpdate,
    ValidationProblem,
    parse_update,
)
from store.catalog import AppConfig, Catalog
from store.models import Status

RECEIVED = datetime(2026, 1, 31, 17, 0, tzinfo=UTC)
OPEN = Catalog()
CONFIGURED = Catalog(
    [
        AppConfig.model_validate(
            {"name": "Planning", "domains": ["Actual", "Forecast", "Budget"]}
        ),
        AppConfig.model_validate({"name": "FCCS", "domains": ["Consolidation"]}),
    ],
    # A catalog loaded from a file accepts only the apps it lists.
    path=Path("apps.json"),
)


def parse(catalog: Catalog = OPEN, **fields: Any) -> ParsedUpdate:
    payload = {"app": "Planning", "domain": "Actual", "status": "OK"}
    payload.update(fields)
    payload = {k: v for k, v in payload.items() if v is not None}
    return parse_update(payload, catalog, RECEIVED)


def problem(catalog: Catalog = OPEN, **fields: Any) -> ValidationProblem:
    with pytest.raises(ValidationProblem) as caught:
        parse(catalog, **fields)
    return caught.value


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("Blank", Status.BLANK),
        ("loading", Status.LOADING),
        ("RUNNING", Status.LOADING),
        ("Processing", Status.LOADING),
        ("in progress", Status.LOADING),
        ("In_Progress", Status.LOADING),
        ("ok", Status.OK),
        ("Success", Status.OK),
        ("completed", Status.OK),
        ("SUCCEEDED", Status.OK),
        ("Warning", Status.WARNING),
        ("Completed with Warnings", Status.WARNING),
        ("completed with errors", Status.WARNING),
        ("error", Status.ERROR),
        ("Failed", Status.ERROR),
        ("FAILURE", Status.ERROR),
    ],
)
def test_status_spelling_is_canonical(spelling: str, expected: Status) -> None:
    assert parse(status=spelling).update.status is expected


def test_unknown_status_lists_accepted_values() -> None:
    found = problem(status="Finished-ish")

    assert found.code == "invalid_status"
    assert found.status == 422
    assert found.field == "status"
    assert found.value == "Finished-ish"
    for name in ("Blank", "Loading", "OK", "Warning", "Error"):
        assert name in found.message


def test_non_string_status_is_invalid() -> None:
    found = problem(status=3)

    assert found.code == "invalid_status"
    assert found.value == 3


@pytest.mark.parametrize("missing", ["app", "domain", "status"])
def test_missing_field_is_named(missing: str) -> None:
    payload: dict[str, Any] = {"app": "Planning", "domain": "Actual", "status": "OK"}
    del payload[missing]

    with pytest.raises(ValidationProblem) as caught:
        parse_update(payload, OPEN, RECEIVED)

    assert caught.value.code == "missing_field"
    assert caught.value.field == missing
    assert "send" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"app": 5}, "invalid_type", "app"),
        ({"app": "  "}, "invalid_value", "app"),
        ({"app": "x" * 65}, "invalid_value", "app"),
        ({"domain": "Act\nual"}, "invalid_value", "domain"),
        ({"job_id": True}, "invalid_type", "job_id"),
        ({"job_id": ["1"]}, "invalid_type", "job_id"),
        ({"job_id": "1" * 65}, "invalid_value", "job_id"),
        ({"message": {"text": "x"}}, "invalid_type", "message"),
        ({"timestamp": 1706720400}, "invalid_timestamp", "timestamp"),
        ({"timestamp": "yesterday"}, "invalid_timestamp", "timestamp"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "invalid_timestamp", "timestamp"),
        ({"timestamp": "9999-12-31T23:59:59-01:00"}, "invalid_timestamp", "timestamp"),
        ({"source": 1}, "invalid_type", "source"),
    ],
)
def test_invalid_field_is_named(fields: dict[str, Any], code: str, field: str) -> None:
    found = problem(**fields)

    assert found.code == code
    assert found.field == field
    assert found.status == 422


def test_body_must_be_an_object() -> None:
    with pytest.raises(ValidationProblem) as caught:
        parse_update(["Planning"], OPEN, RECEIVED)

    assert caught.value.code == "invalid_type"


def test_problem_json_has_code_field_value_and_fix() -> None:
    body = problem(status="nope").to_json()

    assert set(body) == {"code", "message", "field", "value"}
    assert body["value"] == "nope"
    assert "Send one of" in body["message"]


def test_problem_json_cuts_long_value() -> None:
    body = problem(app="x" * 500).to_json()

    assert len(body["value"]) == 201


def test_numeric_job_id_becomes_text() -> None:
    assert parse(job_id=12345).update.job_id == "12345"


def test_unknown_fields_are_listed() -> None:
    parsed = parse(stauts="OK", jobid="1")

    assert parsed.ignored_fields == ["jobid", "stauts"]


def test_known_fields_are_not_listed() -> None:
    parsed = parse(job_id="1", message="m", timestamp="2026-01-31T16:00:00Z")

    assert parsed.ignored_fields == []


def test_names_are_stripped() -> None:
    parsed = parse(app=" Planning ", domain="Actual ")

    assert (parsed.update.app, parsed.update.domain) == ("Planning", "Actual")


def test_long_message_is_cut_with_note() -> None:
    parsed = parse(message="m" * (MAX_MESSAGE_LENGTH + 10))

    assert parsed.update.message is not None
    assert len(parsed.update.message) == MAX_MESSAGE_LENGTH
    assert parsed.notes != []


def test_absent_timestamp_is_time_received() -> None:
    assert parse().update.timestamp == RECEIVED


def test_timestamp_without_zone_is_utc() -> None:
    parsed = parse(timestamp="2026-01-31T16:30:00")

    assert parsed.update.timestamp == datetime(2026, 1, 31, 16, 30, tzinfo=UTC)


def test_timestamp_with_offset_is_converted_to_utc() -> None:
    parsed = parse(timestamp="2026-01-31T11:30:00-05:00")

    assert parsed.update.timestamp == datetime(2026, 1, 31, 16, 30, tzinfo=UTC)
    assert parsed.update.timestamp.utcoffset() == timedelta(0)


def test_future_timestamp_is_stored_as_time_received() -> None:
    future = (RECEIVED + timedelta(minutes=6)).isoformat()

    parsed = parse(timestamp=future)

    assert parsed.update.timestamp == RECEIVED
    assert len(parsed.notes) == 1
    assert "future" in parsed.notes[0]


def test_timestamp_within_skew_is_kept() -> None:
    soon = RECEIVED + timedelta(minutes=4)

    parsed = parse(timestamp=soon.isoformat())

    assert parsed.update.timestamp == soon
    assert parsed.notes == []


def test_batch_prefix_names_the_item() -> None:
    with pytest.raises(ValidationProblem) as caught:
        parse_update(
            {"app": "Planning", "domain": "Actual", "status": "??"},
            OPEN,
            RECEIVED,
            prefix="updates[3].",
        )

    assert caught.value.field == "updates[3].status"


def test_open_catalog_accepts_any_row() -> None:
    parsed = parse(app="NewApp", domain="NewDomain")

    assert parsed.update.app == "NewApp"


def test_unknown_app_names_known_ones_and_close_match() -> None:
    found = problem(CONFIGURED, app="Planing")

    assert found.code == "unknown_app"
    assert found.field == "app"
    assert found.value == "Planing"
    assert "Did you mean 'Planning'?" in found.message
    assert "FCCS" in found.message


def test_unknown_domain_names_known_ones() -> None:
    found = problem(CONFIGURED, domain="Acutal")

    assert found.code == "unknown_domain"
    assert found.field == "domain"
    assert "Did you mean 'Actual'?" in found.message
    assert "Forecast" in found.message


def test_unknown_app_in_batch_names_the_item() -> None:
    with pytest.raises(ValidationProblem) as caught:
        parse_update(
            {"app": "HCM", "domain": "Actual", "status": "OK"},
            CONFIGURED,
            RECEIVED,
            prefix="updates[0].",
        )

    assert caught.value.field == "updates[0].app"


def test_names_resolve_to_configured_spelling() -> None:
    parsed = parse(CONFIGURED, app="planning", domain="FORECAST")

    assert parsed.update.app == "Planning"
    assert parsed.update.domain == "Forecast"
