"""Admin alerts for problems of EPMPulse itself, raised and cleared by polling.

A canvas that cannot be published and an alert queue that cannot send both raise
an alert once they have lasted ``after_seconds`` (ten minutes by default), and
clear it when they recover. EPM sign-in problems come from the EPM poller through
``AlertsComponent.on_epm_problem``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

from alerts.outbox import OutboxStatus
from store.catalog import Board
from store.durations import format_duration

PROBLEM_SECONDS = 600.0


class PublisherHealth(Protocol):
    @property
    def failing_since(self) -> float | None: ...

    @property
    def last_error(self) -> str | None: ...


class AdminAlerts(Protocol):
    def raise_admin(self, key: str, text: str) -> None: ...

    def clear_admin(self, key: str) -> None: ...


class AdminChecks:
    """``publishers`` and ``queue_status`` report ``failing_since`` on ``clock``
    (time.monotonic, as BoardPublisher and Outbox use by default)."""

    def __init__(
        self,
        alerts: AdminAlerts,
        publishers: Mapping[Board, PublisherHealth],
        queue_status: Callable[[], OutboxStatus],
        *,
        clock: Callable[[], float] = time.monotonic,
        after_seconds: float = PROBLEM_SECONDS,
    ) -> None:
        self.alerts = alerts
        self.publishers = publishers
        self.queue_status = queue_status
        self.clock = clock
        self.after_seconds = after_seconds

    def check(self) -> None:
        now = self.clock()
        for board, publisher in self.publishers.items():
            key = f"canvas:{board}"
            since = publisher.failing_since
            if since is None:
                self.alerts.clear_admin(key)
            elif now - since >= self.after_seconds:
                self.alerts.raise_admin(
                    key, canvas_problem(board, now - since, publisher.last_error)
                )

        status = self.queue_status()
        if status.failing_since is None:
            self.alerts.clear_admin("alert_queue")
        elif now - status.failing_since >= self.after_seconds:
            self.alerts.raise_admin(
                "alert_queue", queue_problem(status, now - status.failing_since)
            )


def canvas_problem(board: str, seconds: float, error: str | None) -> str:
    return (
        f"The {board} status canvas could not be published for "
        f"{format_duration(seconds)}: {error or 'unknown error'}. Fix the cause "
        "named here (`epmpulse check-config --slack` checks the token, scopes, "
        "channels and canvases); the canvas catches up by itself once a publish "
        "succeeds."
    )


def queue_problem(status: OutboxStatus, seconds: float) -> str:
    fix = (
        f"To fix: {status.fix}."
        if status.fix
        else "EPMPulse keeps retrying; check Slack's status and the network path "
        "from this server to Slack."
    )
    return (
        f"Alert messages could not be sent for {format_duration(seconds)}: "
        f"{status.pending} waiting, last error: {status.last_error}. {fix} "
        "No alert is lost: they go out in order once Slack accepts them."
    )
