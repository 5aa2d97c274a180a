"""The rules by which one update changes a row: ordering, repeats and job runs.

- An update older than the stored one goes to history but does not roll the row back.
- An update identical to the stored row (status, job id, message) changes nothing.
- A ``job_id`` ties updates into a run: first seen (its first update), started
  (its first Loading), finished (its first terminal status). Its duration runs
  from started to finished, and is unknown when the job never reported Loading.
  Without a job id, a run lasts from the first non-OK update to the next OK.
"""

from __future__ import annotations

from datetime import datetime

from store.history import HistoryEvent
from store.models import Change, Record, Status, Update, iso


def apply_update(
    before: Record | None, update: Update
) -> tuple[Change, HistoryEvent | None]:
    """Return what ``update`` does to the row ``before`` and the history event to log.

    The event is None for an exact repeat, which leaves no trace.
    """
    if before is not None and update.timestamp < before.timestamp:
        return Change(update, before, before, changed=False), _event(update, False)

    if before is not None and (
        before.status == update.status
        and before.job_id == update.job_id
        and before.message == update.message
    ):
        return Change(update, before, before, changed=False), None

    first_seen, finished = _run_bounds(before, update)
    started = _run_started(before, update, first_seen)
    since = (
        before.since
        if before is not None and before.status == update.status
        else update.timestamp
    )
    after = Record(
        app=update.app,
        domain=update.domain,
        status=update.status,
        timestamp=update.timestamp,
        received_at=update.received_at,
        since=since,
        job_id=update.job_id,
        message=update.message,
        source=update.source,
        run_first_seen_at=first_seen,
        run_started_at=started,
        run_finished_at=finished,
    )
    return Change(update, before, after, changed=True), _event(update, True)


def _run_started(
    before: Record | None, update: Update, first_seen: datetime | None
) -> datetime | None:
    """Return the time of the run's first Loading, or None if it has had none."""
    if first_seen is None:
        return None
    if before is not None and before.run_first_seen_at == first_seen:
        if before.run_started_at is not None:
            return before.run_started_at
    return update.timestamp if update.status is Status.LOADING else None


def _run_bounds(
    before: Record | None, update: Update
) -> tuple[datetime | None, datetime | None]:
    """Return when the run of ``update`` was first seen and when it finished."""
    terminal_at = update.timestamp if update.status.is_terminal else None

    if update.job_id is not None:
        same_run = before is not None and before.job_id == update.job_id
        if not same_run:
            return update.timestamp, terminal_at
        assert before is not None
        started = before.run_first_seen_at or update.timestamp
        finished = before.run_finished_at or terminal_at
        if not update.status.is_terminal:
            finished = None
        return started, finished

    if update.status is Status.BLANK:
        return None, None
    run_open = (
        before is not None
        and before.run_first_seen_at is not None
        and before.run_finished_at is None
    )
    if update.status is Status.OK:
        if run_open:
            assert before is not None
            return before.run_first_seen_at, update.timestamp
        # An OK that ends no run has no known start, so no duration ("took 0s").
        return None, None
    if run_open:
        assert before is not None
        return before.run_first_seen_at, None
    return update.timestamp, None


def _event(update: Update, applied: bool) -> HistoryEvent:
    return HistoryEvent(
        app=update.app,
        domain=update.domain,
        status=update.status.value,
        timestamp=iso(update.timestamp),
        received_at=iso(update.received_at),
        job_id=update.job_id,
        message=update.message,
        source=update.source,
        applied=applied,
    )
