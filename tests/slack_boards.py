"""Board views built from hand-made records, for the Block Kit renderer tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from store.board import BoardView, build_board
from store.catalog import Catalog
from store.models import Record, Snapshot, Status

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


def record(
    app: str,
    domain: str,
    status: Status,
    *,
    minutes_ago: float = 5,
    job_id: str | None = None,
    message: str | None = None,
) -> Record:
    at = NOW - timedelta(minutes=minutes_ago)
    return Record(
        app=app,
        domain=domain,
        status=status,
        timestamp=at,
        received_at=at,
        since=at,
        job_id=job_id,
        message=message,
        run_started_at=at,
    )


def boards_of(
    *records: Record, catalog: Catalog | None = None, stuck_after: float = 7200
) -> list[BoardView]:
    """The main and ARCS boards showing ``records``."""
    rows = MappingProxyType({(r.app, r.domain): r for r in records})
    snapshot = Snapshot(rows, NOW)
    return [
        build_board(
            snapshot, catalog or Catalog(), board, now=NOW, stuck_after=stuck_after
        )
        for board in ("main", "arcs")
    ]


def large_boards(
    apps: int, domains: int = 5, *, failing_every: int = 3
) -> list[BoardView]:
    """``apps`` apps of ``domains`` rows each; every ``failing_every``-th app has
    an Error row, a Loading row and long messages."""
    records = []
    for a in range(apps):
        for d in range(domains):
            status = Status.OK
            if a % failing_every == 0 and d == 1:
                status = Status.ERROR
            elif a % failing_every == 0 and d == 2:
                status = Status.LOADING
            records.append(
                record(
                    f"App{a:03d}",
                    f"Domain{d}",
                    status,
                    job_id=f"JOB-{a}-{d}",
                    message="Load finished with 12 rejected rows <!here> & more " * 3,
                )
            )
    return boards_of(*records)
