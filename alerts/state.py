"""The alert engine's durable state: per-row episodes, alert groups, admin problems.

Everything here is plain data that round-trips through JSON, because the engine
keeps it in the store's meta table so that a restart continues threads and never
repeats or loses an alert.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from store.models import RowKey

LineState = Literal["open", "recovered", "superseded", "flapping"]


@dataclass
class Line:
    """One row in an alert message, as last reported.

    ``at`` and ``since`` are ISO times of the record's timestamp and of the start of
    its current status. While the row is reported stuck, ``stuck_limit`` is its
    maximum runtime in seconds. Once the row has recovered, ``took`` is the run's
    duration in seconds.
    """

    app: str
    domain: str
    status: str
    job_id: str | None
    message: str | None
    at: str
    since: str
    state: LineState = "open"
    stuck_limit: float | None = None
    took: float | None = None

    @property
    def key(self) -> RowKey:
        return (self.app, self.domain)


@dataclass
class Group:
    """One parent message and its thread: a single failure or a bundle of them.

    ``posted`` turns true when the parent is handed to the outbox. Until then the
    group is the open bundle of its channel, and its thread replies wait in
    ``pending_replies``.
    """

    id: str
    channel: str
    board: str
    opened_at: str
    last_added_at: str
    posted: bool = False
    lines: list[Line] = field(default_factory=list)
    pending_replies: list[str] = field(default_factory=list)

    def line(self, key: RowKey) -> Line | None:
        for line in self.lines:
            if line.key == key:
                return line
        return None

    @property
    def finished(self) -> bool:
        return all(line.state != "open" for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Group:
        values = dict(data)
        values["lines"] = [Line(**line) for line in data.get("lines", [])]
        return cls(**values)


@dataclass
class RowState:
    """The engine's record of one row.

    ``seen`` fingerprints the last record handled, so that a restart that replays
    a record does not handle it twice. ``run`` and ``group`` name the alerted run
    and its open group, and ``stuck_run`` names the run and Loading period already
    alerted as stuck. ``outcome`` is the last terminal outcome ("failure" or
    "success"), and ``flips`` lists the ISO times at which it changed, for flapping
    detection. While the row is quieted, ``flapping`` is the message id of its
    flapping notice.
    """

    app: str
    domain: str
    seen: str | None = None
    run: str | None = None
    group: str | None = None
    stuck_run: str | None = None
    outcome: str | None = None
    flips: list[str] = field(default_factory=list)
    flapping: str | None = None

    @property
    def key(self) -> RowKey:
        return (self.app, self.domain)


@dataclass
class AdminProblem:
    """An open problem of EPMPulse itself and the message that reported it."""

    key: str
    message: str
    text: str
    raised_at: str


@dataclass
class EngineState:
    next_id: int = 1
    rows: dict[RowKey, RowState] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    admin: dict[str, AdminProblem] = field(default_factory=dict)

    def new_message_id(self) -> str:
        message_id = f"m{self.next_id}"
        self.next_id += 1
        return message_id

    def row(self, key: RowKey) -> RowState:
        state = self.rows.get(key)
        if state is None:
            state = self.rows[key] = RowState(*key)
        return state

    def live_message_ids(self) -> set[str]:
        """Messages that may still be edited or replied to."""
        ids = set(self.groups)
        ids.update(problem.message for problem in self.admin.values())
        ids.update(row.flapping for row in self.rows.values() if row.flapping)
        return ids

    def to_json(self) -> dict[str, Any]:
        return {
            "next_id": self.next_id,
            "rows": [asdict(row) for row in self.rows.values()],
            "groups": [group.to_json() for group in self.groups.values()],
            "admin": [asdict(problem) for problem in self.admin.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineState:
        rows = [RowState(**row) for row in data.get("rows", [])]
        groups = [Group.from_json(group) for group in data.get("groups", [])]
        admin = [AdminProblem(**problem) for problem in data.get("admin", [])]
        return cls(
            next_id=int(data.get("next_id", 1)),
            rows={row.key: row for row in rows},
            groups={group.id: group for group in groups},
            admin={problem.key: problem for problem in admin},
        )
