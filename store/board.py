"""Board views derived from a snapshot: rows per board, stuck jobs, counts.

The canvas, the App Home tab, the slash command and the alerts all read boards
through these functions, so they agree on order, board membership and stuckness.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from store.catalog import Board, Catalog
from store.models import Record, Snapshot, Status
from store.smoke import SMOKE_TEST_APP, SMOKE_TEST_DOMAIN


@dataclass(frozen=True, slots=True)
class RowView:
    """A row as shown: the record (None for a configured domain with no update yet),
    whether it is stuck, and for how long it has been running."""

    app: str
    domain: str
    record: Record | None
    stuck: bool
    max_runtime: float

    @property
    def status(self) -> Status:
        return self.record.status if self.record else Status.BLANK

    @property
    def is_failure(self) -> bool:
        return self.stuck or self.status.is_failure

    def running_seconds(self, now: datetime) -> float | None:
        if self.record is None or self.record.status is not Status.LOADING:
            return None
        start = self.record.run_start or self.record.since
        return max(0.0, (now - start).total_seconds())


@dataclass(frozen=True, slots=True)
class AppView:
    name: str
    title: str
    rows: tuple[RowView, ...]


@dataclass(frozen=True, slots=True)
class BoardView:
    board: Board
    apps: tuple[AppView, ...]
    updated_at: datetime | None

    def rows(self) -> list[RowView]:
        return [row for app in self.apps for row in app.rows]

    def counts(self) -> Counter[str]:
        """Rows per status name, with stuck rows counted as ``Stuck``."""
        return Counter("Stuck" if r.stuck else r.status.value for r in self.rows())


def is_stuck(record: Record | None, now: datetime, max_runtime: float) -> bool:
    """Loading for longer than ``max_runtime`` since its run started.

    A later update that starts a new run (another job id) or leaves Loading
    clears it; a progress update of the same run does not.
    """
    if record is None or record.status is not Status.LOADING:
        return False
    started = max(record.run_start or record.since, record.since)
    return (now - started).total_seconds() > max_runtime


def max_runtime_of(catalog: Catalog, app: str, domain: str, default: float) -> float:
    return catalog.max_runtime(app, domain) or default


def board_of(catalog: Catalog, app: str, boards: Iterable[Board]) -> Board:
    """Return the board that shows ``app``; a board that is not set up falls back to
    the main board."""
    board = catalog.board_of(app)
    return board if board in set(boards) else "main"


def build_board(
    snapshot: Snapshot,
    catalog: Catalog,
    board: Board,
    *,
    now: datetime,
    stuck_after: float,
    boards: Iterable[Board] = ("main", "arcs"),
) -> BoardView:
    """Collect the apps of one board in apps.json order, configured domains first.

    Apps not in apps.json follow in the order their rows were first reported.
    """
    active = tuple(boards)
    grouped = snapshot.apps()
    # The smoke-test row checks the write path after a deploy; it is no EPM job.
    grouped.get(SMOKE_TEST_APP, {}).pop(SMOKE_TEST_DOMAIN, None)
    names = [app.name for app in catalog.apps]
    names += [name for name in grouped if catalog.app(name) is None]
    apps: list[AppView] = []
    for name in names:
        if board_of(catalog, name, active) != board:
            continue
        records = grouped.get(name, {})
        config = catalog.app(name)
        domains = [d.name for d in config.domains] if config else []
        domains += [d for d in records if d not in domains]
        rows = []
        for domain in domains:
            record = records.get(domain)
            limit = max_runtime_of(catalog, name, domain, stuck_after)
            rows.append(
                RowView(name, domain, record, is_stuck(record, now, limit), limit)
            )
        if rows:
            apps.append(AppView(name, catalog.title_of(name), tuple(rows)))
    updated = [row.record.received_at for app in apps for row in app.rows if row.record]
    return BoardView(board, tuple(apps), max(updated, default=None))


def failures_first(rows: Iterable[RowView]) -> list[RowView]:
    """Order rows for attention: failures and stuck jobs, running jobs, the rest."""

    def rank(row: RowView) -> int:
        if row.is_failure:
            return 0
        if row.status is Status.LOADING:
            return 1
        return 2

    return sorted(rows, key=rank)
