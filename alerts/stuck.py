"""The stuck checker: notices rows that cross their maximum runtime while Loading.

Nothing is written when a row becomes stuck, so no store change announces it. The
checker runs every second or so: a newly stuck row re-renders its board and raises
one stuck alert. During maintenance (the daily window or EPM's maintenance page)
the alerts wait, and each start or end of maintenance re-renders every board so
that the maintenance line appears or goes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from store.board import is_stuck
from store.maintenance import Maintenance
from store.models import Record, RowKey, Snapshot


class StuckChecker:
    """Usage::

    checker = StuckChecker(lambda: store.snapshot, max_runtime, maintenance,
                           on_stuck=engine.on_stuck, on_row_change=notify_board,
                           on_maintenance_change=notify_all_boards)
    checker.check(now)    # every second
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        max_runtime: Callable[[str, str], float],
        maintenance: Maintenance,
        *,
        on_stuck: Callable[[Record, float], None],
        on_row_change: Callable[[str], None],
        on_maintenance_change: Callable[[], None],
    ) -> None:
        self.snapshot = snapshot
        self.max_runtime = max_runtime
        self.maintenance = maintenance
        self.on_stuck = on_stuck
        self.on_row_change = on_row_change
        self.on_maintenance_change = on_maintenance_change
        self.stuck: set[RowKey] = set()
        self.in_maintenance = False

    def check(self, now: datetime) -> None:
        stuck_now: dict[RowKey, tuple[Record, float]] = {}
        for key, record in self.snapshot().rows.items():
            limit = self.max_runtime(*key)
            if is_stuck(record, now, limit):
                stuck_now[key] = (record, limit)

        # Newly stuck rows re-render their board. Rows that an update made
        # un-stuck were already re-rendered by that update.
        for app, _ in stuck_now.keys() - self.stuck:
            self.on_row_change(app)
        self.stuck = set(stuck_now)

        in_maintenance = self.maintenance.active(now)
        if in_maintenance != self.in_maintenance:
            self.in_maintenance = in_maintenance
            self.on_maintenance_change()
        if in_maintenance:
            return
        # The engine alerts once per run, so offering every stuck row each time
        # is cheap, and alerts held back by maintenance go out when it ends.
        for record, limit in stuck_now.values():
            self.on_stuck(record, limit)
