"""Types shared by every part of EPMPulse: statuses, updates and stored records.

Records and snapshots are frozen, so a reader can hold a snapshot while the store
moves on.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType

# The source of the updates that pull mode stores; the webhook does not accept it.
PULL_SOURCE = "epm"

# A webhook update's time is written to its history line, its record, the API's
# response and the alert state, and each isoformat() call costs more than the
# rest of the rule that applies it. Equal UTC times have equal text, so the
# text is kept per time. Other zones are formatted each time, because equal
# times in two zones are equal datetimes with different texts.
_utc_iso = functools.lru_cache(maxsize=1024)(datetime.isoformat)


def iso(value: datetime) -> str:
    """``value.isoformat()``, remembered for recent UTC times."""
    if value.tzinfo is UTC:
        return _utc_iso(value)
    return value.isoformat()


class Status(enum.StrEnum):
    """Canonical job status. The first four come from the original EPMPulse."""

    BLANK = "Blank"
    LOADING = "Loading"
    OK = "OK"
    WARNING = "Warning"
    ERROR = "Error"

    @property
    def is_failure(self) -> bool:
        return self in (Status.ERROR, Status.WARNING)

    @property
    def is_terminal(self) -> bool:
        return self in (Status.OK, Status.WARNING, Status.ERROR)


# Spellings that EPM rules, scripts and the EPM job console send, grouped by the
# status they stand for. Each is lower case with single spaces, the form that
# parse_status folds a value to. Pull mode maps EPM's REST codes the same way:
# cancel pending is still running, and cancelled is a Warning.
#
# Submitted and queued jobs are Blank, not Loading: the first Loading of a job
# starts its run time and the max_runtime (stuck) clock, and a job that waits in
# the EPM queue has not started yet.
STATUS_SPELLINGS: Mapping[Status, tuple[str, ...]] = MappingProxyType(
    {
        Status.BLANK: ("blank", "not started", "pending", "submitted", "queued"),
        Status.LOADING: (
            "loading",
            "running",
            "processing",
            "in progress",
            "in process",
            "started",
            "cancel pending",
        ),
        Status.OK: (
            "ok",
            "success",
            "successful",
            "succeeded",
            "completed",
            "complete",
            "completed successfully",
            "done",
        ),
        Status.WARNING: (
            "warning",
            "warnings",
            "completed with warning",
            "completed with warnings",
            "completed with errors",
            "completed with threshold exceeded",
            "completed with unknown status",
            "cancelled",
            "canceled",
        ),
        Status.ERROR: ("error", "failed", "failure", "fail", "failed with errors"),
    }
)

# Every accepted spelling, canonical names included, to the status it stands for.
STATUS_ALIASES: Mapping[str, Status] = MappingProxyType(
    {
        spelling: status
        for status, spellings in STATUS_SPELLINGS.items()
        for spelling in spellings
    }
)


def fold_status_spelling(value: str) -> str:
    """Fold a status to the form of STATUS_ALIASES: case-folded, ``_`` and ``-``
    read as spaces, runs of spaces made one."""
    return " ".join(value.replace("_", " ").replace("-", " ").split()).casefold()


def parse_status(value: str) -> Status | None:
    """Return the canonical status for a spelling, or None when it is not one."""
    return STATUS_ALIASES.get(fold_status_spelling(value))


@dataclass(frozen=True, slots=True)
class Update:
    """One validated status report, from the webhook, EPM polling or the CLI.

    ``timestamp`` is when the job reported the status (UTC); ``received_at`` is when
    EPMPulse received it. Both are timezone-aware.
    """

    app: str
    domain: str
    status: Status
    received_at: datetime
    timestamp: datetime
    job_id: str | None = None
    message: str | None = None
    source: str = "webhook"


@dataclass(frozen=True, slots=True)
class Record:
    """The current status of one app/domain row, as stored.

    ``since`` is when the row entered its current status. A run groups the updates
    of one job: ``run_first_seen_at`` is its first update, ``run_started_at`` its
    first Loading (None if it never ran), ``run_finished_at`` its first terminal
    status (None while it runs).
    """

    app: str
    domain: str
    status: Status
    timestamp: datetime
    received_at: datetime
    since: datetime
    job_id: str | None = None
    message: str | None = None
    source: str = "webhook"
    run_started_at: datetime | None = None
    run_finished_at: datetime | None = None
    run_first_seen_at: datetime | None = None

    @property
    def run_start(self) -> datetime | None:
        """Start of the run. For a job, it is its first Loading, or None when the
        job never reported Loading. Without a job id, it is the first non-OK update."""
        if self.job_id is None:
            return self.run_first_seen_at or self.run_started_at
        return self.run_started_at

    @property
    def run_duration_seconds(self) -> float | None:
        """Length of the last finished run in seconds. None while a run is open,
        and None when its start is unknown (a job that never reported Loading)."""
        if self.run_start is None or self.run_finished_at is None:
            return None
        return (self.run_finished_at - self.run_start).total_seconds()

    def with_changes(self, **changes: object) -> Record:
        return replace(self, **changes)  # type: ignore[arg-type]


RowKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of every row, in the order the rows were first seen."""

    rows: Mapping[RowKey, Record] = field(default_factory=lambda: MappingProxyType({}))
    updated_at: datetime | None = None

    def apps(self) -> dict[str, dict[str, Record]]:
        """Group the rows by app, keeping first-seen order."""
        grouped: dict[str, dict[str, Record]] = {}
        for (app, domain), record in self.rows.items():
            grouped.setdefault(app, {})[domain] = record
        return grouped

    def get(self, app: str, domain: str) -> Record | None:
        return self.rows.get((app, domain))


@dataclass(frozen=True, slots=True)
class Change:
    """The effect of one applied update on its row."""

    update: Update
    before: Record | None
    after: Record | None
    changed: bool
