"""Render a board as Slack canvas markdown. Pure: same input, same markdown.

The markdown starts with a summary line, not an H1: a whole-canvas replace keeps a
leading H1 of the old content, so a title there would pile up.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from canvas.escape import canvas_text
from store.board import BoardView, RowView
from store.durations import format_duration
from store.models import Status

MAX_NAME_LENGTH = 64
MAX_DETAILS_LENGTH = 200
MAX_JOB_LENGTH = 24

STATUS_EMOJI = {
    Status.BLANK: ":white_circle:",
    Status.LOADING: ":hourglass_flowing_sand:",
    Status.OK: ":white_check_mark:",
    Status.WARNING: ":warning:",
    Status.ERROR: ":x:",
}
STUCK_EMOJI = ":rotating_light:"
SUMMARY_ORDER = ("Error", "Stuck", "Warning", "Loading", "OK", "Blank")
SUMMARY_EMOJI = {
    "Error": STATUS_EMOJI[Status.ERROR],
    "Stuck": STUCK_EMOJI,
    "Warning": STATUS_EMOJI[Status.WARNING],
    "Loading": STATUS_EMOJI[Status.LOADING],
    "OK": STATUS_EMOJI[Status.OK],
    "Blank": STATUS_EMOJI[Status.BLANK],
}


def format_time(value: datetime, tz: tzinfo, now: datetime | None = None) -> str:
    """Format a time in the display zone, always naming the zone.

    Times of the same local day as ``now`` show only the clock.
    """
    local = value.astimezone(tz)
    zone = local.tzname() or "UTC"
    today = now.astimezone(tz).date() if now is not None else None
    if today is not None and local.date() == today:
        return f"{local:%H:%M} {zone}"
    if today is None or local.year == today.year:
        return f"{local:%b %d %H:%M} {zone}"
    return f"{local:%b %d %Y %H:%M} {zone}"


def summary_line(view: BoardView, tz: tzinfo, now: datetime) -> str:
    counts = view.counts()
    parts = [
        f"{SUMMARY_EMOJI[name]} {counts[name]} {name}"
        for name in SUMMARY_ORDER
        if counts.get(name)
    ]
    updated = (
        f"last update {format_time(view.updated_at, tz, now)}"
        if view.updated_at
        else "no updates yet"
    )
    return " · ".join(parts + [updated])


def row_details(row: RowView, now: datetime) -> str:
    """Message plus run facts, as plain text (the caller escapes it)."""
    parts: list[str] = []
    if row.stuck:
        parts.append(f"STUCK: running longer than {format_duration(row.max_runtime)}")
    record = row.record
    if record is None:
        return "no update yet"
    running = row.running_seconds(now)
    if running is not None:
        parts.append(f"running for {format_duration(running)}")
    elif record.run_duration_seconds is not None and record.status.is_terminal:
        parts.append(f"took {format_duration(record.run_duration_seconds)}")
    if record.message:
        parts.append(record.message)
    return " · ".join(parts)


def status_cell(row: RowView) -> str:
    if row.stuck:
        return f"{STUCK_EMOJI} Stuck"
    return f"{STATUS_EMOJI[row.status]} {row.status.value}"


def render_board(
    view: BoardView,
    *,
    tz: tzinfo,
    now: datetime,
    notice: str | None = None,
) -> str:
    """Render a board. ``notice`` (e.g. an EPM maintenance line) goes under the
    summary."""
    lines = [f"**EPM job status** · {summary_line(view, tz, now)}"]
    if notice:
        lines += ["", f"> {notice}"]
    if not view.apps:
        lines += [
            "",
            "No job status yet. EPM business rules post to `/api/v1/status`; "
            "the rows appear here as they report.",
        ]
    for app in view.apps:
        lines += [
            "",
            f"## {canvas_text(app.title, MAX_NAME_LENGTH)}",
            "",
            "| Domain | Status | Since | Job | Details |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in app.rows:
            record = row.record
            since = format_time(record.since, tz, now) if record else "—"
            job = canvas_text(record.job_id, MAX_JOB_LENGTH) if record else ""
            details = canvas_text(row_details(row, now), MAX_DETAILS_LENGTH)
            lines.append(
                f"| {canvas_text(row.domain, MAX_NAME_LENGTH)} | {status_cell(row)} "
                f"| {since} | {job or '—'} | {details or ' '} |"
            )
    return "\n".join(lines) + "\n"
