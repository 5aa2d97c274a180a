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
    error_value,
    parse_update,
)
from store.catalog import AppConfig, Catalog
from store.models import (
    STATUS_ALIASES,
    STATUS_SPELLINGS,
    Status,
    fold_status_spelling,
    parse_status,
)

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
        ({"source": "x" * 65}, "invalid_value", "source"),
        ({"source": "rule\nname"}, "invalid_value", "source"),
        ({"source": "EPM"}, "invalid_value", "source"),
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


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("Cancelled", Status.WARNING),
        ("Canceled", Status.WARNING),
        ("Cancel Pending", Status.LOADING),
        ("In Process", Status.LOADING),
        ("In Progress", Status.LOADING),
        ("Processing", Status.LOADING),
        ("Completed with warning", Status.WARNING),
        ("Completed with warnings", Status.WARNING),
        ("Failed with errors", Status.ERROR),
        ("Completed successfully", Status.OK),
        ("Completed with threshold exceeded", Status.WARNING),
        ("COMPLETED_WITH_THRESHOLD_EXCEEDED", Status.WARNING),
        ("Submitted", Status.BLANK),
        ("Queued", Status.BLANK),
    ],
)
def test_epm_status_word_is_accepted(spelling: str, expected: Status) -> None:
    assert parse(status=spelling).update.status is expected


def test_status_aliases_map_to_canonical_statuses() -> None:
    for spelling, status in STATUS_ALIASES.items():
        assert isinstance(status, Status), spelling
        assert parse_status(spelling) is status, spelling
        assert parse_status(spelling.upper()) is status, spelling


def test_status_aliases_are_folded() -> None:
    # A spelling that is not in folded form could never be looked up.
    for spelling in STATUS_ALIASES:
        assert fold_status_spelling(spelling) == spelling


def test_status_aliases_do_not_conflict() -> None:
    listed = [s for spellings in STATUS_SPELLINGS.values() for s in spellings]
    repeated = sorted({s for s in listed if listed.count(s) > 1})

    assert repeated == []
    assert len(STATUS_ALIASES) == len(listed)


def test_canonical_status_names_map_to_themselves() -> None:
    for status in Status:
        assert STATUS_ALIASES[status.value.casefold()] is status


def test_unknown_status_message_lists_every_spelling() -> None:
    found = problem(status="Finished-ish")

    for spelling in STATUS_ALIASES:
        assert spelling in found.message.casefold(), spelling


@pytest.mark.parametrize("field", ["app", "domain", "job_id"])
@pytest.mark.parametrize(
    "character", ["\u200b", "\u202e", "\u2066", "\ufeff", "\u00ad", "\u2028"]
)
def test_invisible_character_is_rejected(field: str, character: str) -> None:
    value = f"Plan{character}ning"

    found = problem(**{field: value})

    assert found.code == "invalid_value"
    assert found.field == field
    assert found.status == 422
    assert found.value == value
    assert f"Plan\\u{ord(character):04x}ning" in found.message
    assert f"U+{ord(character):04X}" in found.message
    assert "Remove it" in found.message


def test_invisible_character_is_named() -> None:
    found = problem(domain="A\u202eB")

    assert "RIGHT-TO-LEFT OVERRIDE" in found.message


def test_names_are_nfc_normalised() -> None:
    parsed = parse(app="Cafe\u0301", domain=" Re\u0301sume\u0301 ")

    assert parsed.update.app == "Caf\u00e9"
    assert parsed.update.domain == "R\u00e9sum\u00e9"


def test_job_id_is_nfc_normalised() -> None:
    assert parse(job_id=" Cafe\u0301 ").update.job_id == "Caf\u00e9"


def test_batch_item_not_an_object_names_the_item() -> None:
    with pytest.raises(ValidationProblem) as caught:
        parse_update([1], OPEN, RECEIVED, prefix="updates[0].")

    assert caught.value.field == "updates[0]"
    assert caught.value.message.startswith("updates[0] must be a JSON object")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1}, '{"a": 1}'),
        (["x", None], '["x", null]'),
        ({"name": "Café"}, '{"name": "Café"}'),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        ({"n": float("nan")}, "<dict>"),
        (1.5, 1.5),
        (7, 7),
        (None, None),
        (True, True),
    ],
)
def test_error_value_is_json_scalar(value: Any, expected: Any) -> None:
    assert error_value(value) == expected


def test_error_value_cuts_long_json_text() -> None:
    value = error_value(["x" * 500])

    assert isinstance(value, str)
    assert value.startswith('["xxx')
    assert len(value) == 201


def test_error_value_cuts_long_integer() -> None:
    value = error_value(10**400)

    assert isinstance(value, str)
    assert len(value) == 201


def test_problem_json_shows_object_as_json() -> None:
    body = problem(status={"a": 1}).to_json()

    assert body["value"] == '{"a": 1}'


@pytest.mark.parametrize(
    ("variant", "known"),
    [
        ("jobId", "job_id"),
        ("JobID", "job_id"),
        ("job-id", "job_id"),
        ("jobid", "job_id"),
        ("Message", "message"),
        ("time_stamp", "timestamp"),
        ("timeStamp", "timestamp"),
        ("Source", "source"),
    ],
)
def test_field_variant_gets_did_you_mean_note(variant: str, known: str) -> None:
    parsed = parse(**{variant: "x"})

    assert parsed.ignored_fields == [variant]
    assert f"did you mean {known}?" in " ".join(parsed.notes)


def test_field_variant_is_not_read() -> None:
    parsed = parse(jobId="42")

    assert parsed.update.job_id is None


def test_field_variant_beside_field_gets_no_note() -> None:
    parsed = parse(job_id="1", jobId="2")

    assert parsed.update.job_id == "1"
    assert parsed.ignored_fields == ["jobId"]
    assert parsed.notes == []


def test_field_variant_note_names_batch_item() -> None:
    parsed = parse_update(
        {"app": "Planning", "domain": "Actual", "status": "OK", "jobId": 7},
        OPEN,
        RECEIVED,
        prefix="updates[2].",
    )

    assert parsed.ignored_fields == ["updates[2].jobId"]
    assert parsed.notes[0].startswith("updates[2].jobId was ignored")


def test_typo_gets_no_did_you_mean_note() -> None:
    assert parse(stauts="OK").notes == []


@pytest.mark.parametrize(
    ("variant", "missing"), [("App", "app"), ("DOMAIN", "domain"), ("Status", "status")]
)
def test_missing_field_names_its_variant(variant: str, missing: str) -> None:
    payload: dict[str, Any] = {"app": "Planning", "domain": "Actual", "status": "OK"}
    payload[variant] = payload.pop(missing)

    with pytest.raises(ValidationProblem) as caught:
        parse_update(payload, OPEN, RECEIVED)

    assert caught.value.code == "missing_field"
    assert caught.value.field == missing
    assert f"did you mean {missing}?" in caught.value.message
    assert variant in caught.value.message


def test_readme_lists_every_status_spelling() -> None:
    from pathlib import Path

    from store.models import STATUS_SPELLINGS

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("| Stored as | Also accepted |") :]
    table = table[: table.index("\n\n")].replace(
        "with warning(s)", "with warning, completed with warnings"
    )
    for status, spellings in STATUS_SPELLINGS.items():
        row = next(
            line for line in table.splitlines() if f"| `{status.value}` |" in line
        )
        listed = {part.strip() for part in row.split("|")[2].split(",")}
        for spelling in spellings:
            if spelling == status.value.lower():
                continue
            assert spelling in listed, f"README misses {spelling!r} for {status.value}"
