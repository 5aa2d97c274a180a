"""How one update changes a row: ordering, repeats, ``since`` and job runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from store.models import Record, Status, Update, iso
from store.rules import apply_update

T0 = datetime(2026, 1, 31, 17, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def update(
    status: Status,
    minutes: float = 0,
    *,
    job_id: str | None = None,
    message: str | None = None,
) -> Update:
    return Update(
        "Planning", "Actual", status, at(minutes), at(minutes), job_id, message
    )


def play(*updates: Update) -> Record:
    """Apply updates in order to an empty row and return the final record."""
    record: Record | None = None
    for item in updates:
        change, _ = apply_update(record, item)
        record = change.after
    assert record is not None
    return record


def test_first_update_creates_row() -> None:
    change, event = apply_update(None, update(Status.LOADING, job_id="1"))

    assert change.changed is True
    assert change.before is None
    assert change.after is not None
    assert change.after.since == T0
    assert event is not None
    assert event.applied is True


def test_older_update_goes_to_history_only() -> None:
    current = play(update(Status.OK, 10))

    change, event = apply_update(current, update(Status.ERROR, 5, message="late"))

    assert change.changed is False
    assert change.after is current
    assert event is not None
    assert event.applied is False
    assert event.status == "Error"
    assert event.message == "late"


def test_identical_repeat_changes_nothing() -> None:
    current = play(update(Status.LOADING, 0, job_id="7", message="loading"))

    change, event = apply_update(
        current, update(Status.LOADING, 3, job_id="7", message="loading")
    )

    assert change.changed is False
    assert change.after is current
    assert event is None


def test_same_timestamp_with_new_status_applies() -> None:
    current = play(update(Status.LOADING, 0))

    change, _ = apply_update(current, update(Status.OK, 0))

    assert change.changed is True
    assert change.after is not None
    assert change.after.status is Status.OK


def test_since_kept_when_status_unchanged() -> None:
    record = play(
        update(Status.LOADING, 0, message="step 1"),
        update(Status.LOADING, 4, message="step 2"),
    )

    assert record.since == T0
    assert record.timestamp == at(4)
    assert record.message == "step 2"


def test_since_moves_when_status_changes() -> None:
    record = play(update(Status.LOADING, 0), update(Status.ERROR, 4))

    assert record.since == at(4)


def test_job_run_finishes_at_first_terminal_status() -> None:
    record = play(
        update(Status.LOADING, 0, job_id="42"),
        update(Status.LOADING, 2, job_id="42", message="half way"),
        update(Status.WARNING, 7, job_id="42"),
        update(Status.OK, 9, job_id="42"),
    )

    assert record.run_started_at == T0
    assert record.run_finished_at == at(7)
    assert record.run_duration_seconds == 420


def test_job_run_is_open_while_loading() -> None:
    record = play(update(Status.LOADING, 0, job_id="42"))

    assert record.run_started_at == T0
    assert record.run_finished_at is None
    assert record.run_duration_seconds is None


def test_new_job_id_starts_new_run() -> None:
    record = play(
        update(Status.LOADING, 0, job_id="42"),
        update(Status.OK, 5, job_id="42"),
        update(Status.LOADING, 20, job_id="43"),
    )

    assert record.run_started_at == at(20)
    assert record.run_finished_at is None


def test_run_without_job_lasts_until_next_ok() -> None:
    record = play(
        update(Status.LOADING, 0),
        update(Status.ERROR, 3, message="rule failed"),
        update(Status.LOADING, 5, message="retry"),
        update(Status.OK, 12),
    )

    assert record.run_started_at == T0
    assert record.run_finished_at == at(12)
    assert record.run_duration_seconds == 720


def test_error_without_job_keeps_run_open() -> None:
    record = play(update(Status.LOADING, 0), update(Status.ERROR, 3))

    assert record.run_started_at == T0
    assert record.run_finished_at is None


def test_ok_without_open_run_has_no_duration() -> None:
    record = play(update(Status.OK, 0), update(Status.OK, 5, message="again"))

    assert record.run_duration_seconds is None


def test_blank_resets_run() -> None:
    record = play(
        update(Status.LOADING, 0, job_id="42"),
        update(Status.BLANK, 5),
    )

    assert record.status is Status.BLANK
    assert record.run_started_at is None
    assert record.run_finished_at is None
    assert record.job_id is None


def test_run_after_blank_starts_fresh() -> None:
    record = play(
        update(Status.LOADING, 0),
        update(Status.BLANK, 5),
        update(Status.LOADING, 8),
        update(Status.OK, 10),
    )

    assert record.run_started_at == at(8)
    assert record.run_duration_seconds == 120


def test_job_without_loading_has_no_duration() -> None:
    record = play(update(Status.ERROR, 0, job_id="55"))

    assert record.run_first_seen_at == T0
    assert record.run_finished_at == T0
    assert record.run_started_at is None
    assert record.run_start is None
    assert record.run_duration_seconds is None


def test_queued_job_duration_starts_at_loading() -> None:
    record = play(
        update(Status.BLANK, 0, job_id="56"),
        update(Status.LOADING, 4, job_id="56"),
        update(Status.OK, 10, job_id="56"),
    )

    assert record.run_first_seen_at == T0
    assert record.run_duration_seconds == 360


def test_queued_job_that_never_loads_has_no_duration() -> None:
    record = play(
        update(Status.BLANK, 0, job_id="57"),
        update(Status.WARNING, 3, job_id="57", message="cancelled"),
    )

    assert record.run_duration_seconds is None


def test_run_without_job_starts_at_first_non_ok() -> None:
    record = play(update(Status.ERROR, 0), update(Status.OK, 5))

    assert record.run_start == T0
    assert record.run_duration_seconds == 300


def test_iso_is_isoformat_in_every_zone() -> None:
    utc = datetime(2026, 12, 4, 17, 20, 0, 123456, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert paris == utc  # equal datetimes, so a cache keyed by value would mix them

    for first, second in ((utc, paris), (paris, utc)):
        assert iso(first) == first.isoformat()
        assert iso(second) == second.isoformat()
    assert iso(paris) == "2026-12-04T18:20:00.123456+01:00"
    assert iso(utc.replace(tzinfo=None)) == "2026-12-04T17:20:00.123456"
