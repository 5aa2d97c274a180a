"""The alert engine: decides which messages a status change or a stuck job sends.

- A row turning to a status in ``alert_on``, or stuck, opens an alert. Alerts that
  open within ``bundle_seconds`` of each other in one channel share one parent
  message, posted once the bundle has been quiet that long (or has waited
  ``max_bundle_seconds``), with one line per row.
- Later updates of an alerted run edit the parent and reply in its thread. An OK
  recovers the row: a reply, and the parent shows it. A new run that fails gets
  its own alert, and the old thread gets a reply about it. A row that was never
  alerted sends nothing when it recovers.
- A row whose outcome flips between failure and success more than
  ``flap_threshold`` times within ``flap_window_seconds`` gets one flapping notice
  and stays quiet until it has not flipped for that long.
- Admin problems (of EPMPulse itself) post once per key until cleared.

The engine only queues messages on the outbox and changes its state; the caller
saves both (``on_change``) and runs ``tick`` for bundles and flapping ends.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from alerts.render import (
    AlertMessage,
    render_admin,
    render_admin_resolved_reply,
    render_change_reply,
    render_flapping_end_reply,
    render_flapping_notice,
    render_flapping_reply,
    render_group,
    render_recovery_reply,
    render_stuck_reply,
    render_superseded_reply,
)
from alerts.state import AdminProblem, EngineState, Group, Line, RowState
from store.models import Change, Record, Snapshot, Status, iso

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertSettings:
    alert_on: frozenset[Status]
    tz: tzinfo
    bundle_seconds: float = 5.0
    max_bundle_seconds: float = 60.0
    flap_threshold: int = 5
    flap_window_seconds: float = 3600.0


class Router(Protocol):
    """Routing of alerts: ``channel_of`` returns the (board, channel) of an app."""

    def channel_of(self, app: str) -> tuple[str, str]: ...

    def admin_channel(self) -> str: ...

    def link(self, board: str) -> str | None: ...


class Outbound(Protocol):
    def post(self, channel: str, message_id: str, message: AlertMessage) -> None: ...

    def reply(self, parent_id: str, message_id: str, message: AlertMessage) -> None: ...

    def update(self, message_id: str, message: AlertMessage) -> None: ...


class AlertEngine:
    """Usage::

    engine = AlertEngine(settings, router, outbox, on_change=saver.mark_dirty)
    engine.load(saved)               # None on the first start
    engine.reconcile(store.snapshot)
    store.subscribe(engine.on_changes)
    delay = engine.tick()            # regularly; seconds until a bundle is due
    """

    def __init__(
        self,
        settings: AlertSettings,
        router: Router,
        outbox: Outbound,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.outbox = outbox
        self.clock = clock
        self.on_change = on_change
        self.state = EngineState()
        self._loaded = False

    # --- state -------------------------------------------------------------

    def load(self, data: dict[str, object] | None) -> None:
        """Restore saved state; None means alerts run for the first time."""
        if data is not None:
            self.state = EngineState.from_json(dict(data))
            self._loaded = True

    def to_json(self) -> dict[str, object]:
        return self.state.to_json()

    def live_message_ids(self) -> set[str]:
        return self.state.live_message_ids()

    def reconcile(self, snapshot: Snapshot) -> None:
        """Handle changes that were stored but not handled before a restart.

        On the first start the current rows are only recorded: failures that
        happened before alerts were on are not announced.
        """
        if not self._loaded:
            for record in snapshot.rows.values():
                row = self.state.row((record.app, record.domain))
                row.seen = _fingerprint(record)
                row.outcome = _outcome(record.status) or row.outcome
            self._loaded = True
            self.on_change()
            return
        self._handle_all(snapshot.rows.values())

    # --- inputs ------------------------------------------------------------

    def on_changes(self, snapshot: Snapshot, changes: Sequence[Change]) -> bool:
        """Store listener: handle every row that an applied update changed, and
        return whether the alert state changed (an alert, a bundle, a flip)."""
        return self._handle_all(
            change.after
            for change in changes
            if change.changed and change.after is not None
        )

    def _handle_all(self, records: Iterable[Record]) -> bool:
        changed = False
        for record in records:
            changed = self._on_record(record) or changed
        if changed:
            self.on_change()
        return changed

    def on_stuck(self, record: Record, max_runtime: float) -> None:
        """Alert once per run and Loading period that ``record`` has been running
        longer than ``max_runtime`` seconds."""
        if record.status is not Status.LOADING:
            return
        row = self.state.row((record.app, record.domain))
        stuck_id = f"{_run_id(record)}@{iso(record.since)}"
        if row.stuck_run == stuck_id:
            return
        row.stuck_run = stuck_id
        if row.flapping is None:
            self._alert_stuck(row, record, max_runtime)
        self.on_change()

    def tick(self) -> float | None:
        """Post due bundles and end flapping for rows stable long enough.

        Returns the seconds until the next bundle is due, or None without one.
        """
        now = self.clock()
        changed = self._end_flapping(now)
        next_due: float | None = None
        for group in [g for g in self.state.groups.values() if not g.posted]:
            quiet = now - datetime.fromisoformat(group.last_added_at)
            waited = now - datetime.fromisoformat(group.opened_at)
            due_in = min(
                self.settings.bundle_seconds - quiet.total_seconds(),
                self.settings.max_bundle_seconds - waited.total_seconds(),
            )
            if due_in <= 0:
                self._post_group(group, now)
                changed = True
            else:
                next_due = due_in if next_due is None else min(next_due, due_in)
        if changed:
            self.on_change()
        return next_due

    # --- admin problems ----------------------------------------------------

    def raise_admin(self, key: str, text: str) -> None:
        """Post ``text`` (what is wrong and how to fix it) once until cleared."""
        if key in self.state.admin:
            return
        now = self.clock()
        problem = AdminProblem(key, self.state.new_message_id(), text, now.isoformat())
        self.state.admin[key] = problem
        log.warning("admin alert %s: %s", key, text)
        message = render_admin(
            text, raised_at=problem.raised_at, tz=self.settings.tz, now=now
        )
        self.outbox.post(self.router.admin_channel(), problem.message, message)
        self.on_change()

    def clear_admin(self, key: str) -> None:
        problem = self.state.admin.pop(key, None)
        if problem is None:
            return
        now = self.clock()
        resolved = now.isoformat()
        log.info("admin alert %s resolved", key)
        tz = self.settings.tz
        reply = render_admin_resolved_reply(resolved, tz=tz, now=now)
        self.outbox.reply(
            problem.message, self.state.new_message_id(), AlertMessage(reply)
        )
        edited = render_admin(
            problem.text,
            raised_at=problem.raised_at,
            resolved_at=resolved,
            tz=tz,
            now=now,
        )
        self.outbox.update(problem.message, edited)
        self.on_change()

    @property
    def admin_problems(self) -> list[str]:
        return sorted(self.state.admin)

    # --- row changes -------------------------------------------------------

    def _on_record(self, record: Record) -> bool:
        """Handle one stored record and return whether the saved state changed."""
        row = self.state.row((record.app, record.domain))
        fingerprint = _fingerprint(record)
        if row.seen == fingerprint:
            return False
        row.seen = fingerprint
        now = self.clock()

        changed = self._count_flip(row, record, now)
        if row.flapping is not None:
            return changed

        group = self._open_group(row)
        run = _run_id(record)
        failing = record.status in self.settings.alert_on
        if group is None:
            if not failing:
                return changed
            self._open_alert(row, record, now, stuck_limit=None)
            return True

        line = group.line(row.key)
        assert line is not None
        if record.status is Status.OK:
            self._recover(group, line, row, record, now)
        elif failing and run != row.run and group.posted:
            self._supersede(group, line, row, record, now)
            self._open_alert(row, record, now, stuck_limit=None)
        else:
            # A posted alert stays with its run, so that a retry under a new job
            # id that fails again gets an alert of its own.
            if not group.posted:
                row.run = run
            self._update_line(group, line, record, now)
        return True

    def _alert_stuck(self, row: RowState, record: Record, max_runtime: float) -> None:
        now = self.clock()
        group = self._open_group(row)
        run = _run_id(record)
        if group is not None and (row.run == run or not group.posted):
            line = group.line(row.key)
            assert line is not None
            row.run = run
            _copy_record(line, record)
            line.stuck_limit = max_runtime
            self._reply(group, render_stuck_reply(line, tz=self.settings.tz, now=now))
            self._refresh(group, now)
            return
        if group is not None:
            self._supersede(group, group.line(row.key), row, record, now)
        self._open_alert(row, record, now, stuck_limit=max_runtime)

    def _open_group(self, row: RowState) -> Group | None:
        if row.group is None:
            return None
        group = self.state.groups.get(row.group)
        if group is None or group.line(row.key) is None:
            row.group = None
            return None
        return group

    def _open_alert(
        self, row: RowState, record: Record, now: datetime, stuck_limit: float | None
    ) -> None:
        board, channel = self.router.channel_of(record.app)
        group = self._bundle(channel)
        if group is None:
            group = Group(
                id=self.state.new_message_id(),
                channel=channel,
                board=board,
                opened_at=now.isoformat(),
                last_added_at=now.isoformat(),
            )
            self.state.groups[group.id] = group
        line = Line(
            app=record.app,
            domain=record.domain,
            status=record.status.value,
            job_id=record.job_id,
            message=record.message,
            at=iso(record.timestamp),
            since=iso(record.since),
            stuck_limit=stuck_limit,
        )
        group.lines = [old for old in group.lines if old.key != line.key] + [line]
        group.last_added_at = now.isoformat()
        row.group = group.id
        row.run = _run_id(record)
        log.info(
            "alert for %s/%s (%s, job %s) in message %s",
            record.app,
            record.domain,
            "stuck" if stuck_limit is not None else record.status.value,
            record.job_id,
            group.id,
        )
        if self.settings.bundle_seconds <= 0:
            self._post_group(group, now)

    def _bundle(self, channel: str) -> Group | None:
        for group in self.state.groups.values():
            if not group.posted and group.channel == channel:
                return group
        return None

    def _update_line(
        self, group: Group, line: Line, record: Record, now: datetime
    ) -> None:
        previous = line.status
        _copy_record(line, record)
        line.stuck_limit = None
        reply = render_change_reply(line, previous, tz=self.settings.tz, now=now)
        self._reply(group, reply)
        self._refresh(group, now)

    def _recover(
        self, group: Group, line: Line, row: RowState, record: Record, now: datetime
    ) -> None:
        _copy_record(line, record)
        line.state = "recovered"
        line.stuck_limit = None
        line.took = record.run_duration_seconds
        row.group = None
        row.run = None
        self._reply(group, render_recovery_reply(line, tz=self.settings.tz, now=now))
        self._refresh(group, now)

    def _supersede(
        self,
        group: Group,
        line: Line | None,
        row: RowState,
        record: Record,
        now: datetime,
    ) -> None:
        if line is None:
            return
        _copy_record(line, record)
        line.state = "superseded"
        line.stuck_limit = None
        row.group = None
        reply = render_superseded_reply(line, tz=self.settings.tz, now=now)
        self._reply(group, reply)
        self._refresh(group, now)

    def _reply(self, group: Group, text: str) -> None:
        if not group.posted:
            group.pending_replies.append(text)
            return
        message_id = self.state.new_message_id()
        self.outbox.reply(group.id, message_id, AlertMessage(text))

    def _refresh(self, group: Group, now: datetime) -> None:
        """Edit a posted parent to show its rows' newest state."""
        if not group.posted:
            return
        self.outbox.update(group.id, self._render(group, now))
        if group.finished:
            del self.state.groups[group.id]

    def _post_group(self, group: Group, now: datetime) -> None:
        group.posted = True
        self.outbox.post(group.channel, group.id, self._render(group, now))
        for text in group.pending_replies:
            self.outbox.reply(group.id, self.state.new_message_id(), AlertMessage(text))
        group.pending_replies = []
        if group.finished:
            del self.state.groups[group.id]

    def _render(self, group: Group, now: datetime) -> AlertMessage:
        link = self.router.link(group.board)
        return render_group(group, tz=self.settings.tz, now=now, link=link)

    # --- flapping ----------------------------------------------------------

    def _count_flip(self, row: RowState, record: Record, now: datetime) -> bool:
        """Record a flip of the row's outcome, and start flapping past the threshold.

        Returns whether the saved state changed.
        """
        outcome = _outcome(record.status)
        if outcome is None or outcome == row.outcome:
            return False
        if row.outcome is not None:
            row.flips.append(now.isoformat())
        row.outcome = outcome
        self._forget_old_flips(row, now)
        threshold = self.settings.flap_threshold
        # Starting needs threshold + 1 flips and ending needs only the newest, so
        # older ones are dropped: the saved state stays small for a row that
        # flips all day.
        del row.flips[: -(threshold + 1)]
        if row.flapping is None and len(row.flips) > threshold:
            self._start_flapping(row, record, now)
        return True

    def _forget_old_flips(self, row: RowState, now: datetime) -> None:
        cutoff = now - timedelta(seconds=self.settings.flap_window_seconds)
        row.flips = [f for f in row.flips if datetime.fromisoformat(f) > cutoff]

    def _start_flapping(self, row: RowState, record: Record, now: datetime) -> None:
        board, channel = self.router.channel_of(record.app)
        row.flapping = self.state.new_message_id()
        log.info(
            "%s/%s is flapping (%d flips): alerts for it are paused",
            record.app,
            record.domain,
            len(row.flips),
        )
        notice = render_flapping_notice(
            record.app,
            record.domain,
            flips=len(row.flips),
            window_seconds=self.settings.flap_window_seconds,
            tz=self.settings.tz,
            now=now,
            link=self.router.link(board),
        )
        self.outbox.post(channel, row.flapping, notice)

        # The notice takes over from the row's open alert.
        group = self._open_group(row)
        row.group = None
        row.run = None
        if group is None:
            return
        if not group.posted:
            group.lines = [line for line in group.lines if line.key != row.key]
            if not group.lines:
                del self.state.groups[group.id]
            return
        line = group.line(row.key)
        assert line is not None
        line.state = "flapping"
        self._reply(group, render_flapping_reply(record.app, record.domain))
        self._refresh(group, now)

    def _end_flapping(self, now: datetime) -> bool:
        changed = False
        for row in self.state.rows.values():
            if row.flapping is None:
                continue
            self._forget_old_flips(row, now)
            if row.flips:
                continue
            status = _status_name(row.outcome)
            board, _ = self.router.channel_of(row.app)
            window = self.settings.flap_window_seconds
            log.info("%s/%s is stable again: alerts resume", row.app, row.domain)
            reply = render_flapping_end_reply(
                row.app, row.domain, status, window_seconds=window
            )
            self.outbox.reply(
                row.flapping, self.state.new_message_id(), AlertMessage(reply)
            )
            notice = render_flapping_notice(
                row.app,
                row.domain,
                flips=0,
                window_seconds=window,
                tz=self.settings.tz,
                now=now,
                link=self.router.link(board),
                ended_status=status,
            )
            self.outbox.update(row.flapping, notice)
            row.flapping = None
            changed = True
        return changed


def _outcome(status: Status) -> str | None:
    if status.is_failure:
        return "failure"
    if status is Status.OK:
        return "success"
    return None


def _status_name(outcome: str | None) -> str:
    return "failing" if outcome == "failure" else "OK"


def _run_id(record: Record) -> str:
    if record.job_id:
        return f"job:{record.job_id}"
    if record.run_first_seen_at is not None:
        return f"run:{iso(record.run_first_seen_at)}"
    return "none"


def _fingerprint(record: Record) -> str:
    parts = (
        record.status.value,
        iso(record.timestamp),
        record.job_id or "",
        record.message or "",
        _run_id(record),
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _copy_record(line: Line, record: Record) -> None:
    line.status = record.status.value
    line.job_id = record.job_id
    line.message = record.message
    line.at = iso(record.timestamp)
    line.since = iso(record.since)
