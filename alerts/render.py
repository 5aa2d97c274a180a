"""Render alert messages as Block Kit plus fallback text. Pure: same input, same output.

Outside text (app, domain, job id, message, error strings) goes through
``mrkdwn_text`` once, here, so that it cannot mention anyone or add a link. The
fallback ``text`` is what notifications and screen readers show, so it carries the
same facts as the blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from alerts.state import Group, Line
from canvas.escape import mrkdwn_text
from canvas.render import STATUS_EMOJI, STUCK_EMOJI, format_time
from store.durations import format_duration
from store.models import Status

MAX_NAME_LENGTH = 64
MAX_JOB_LENGTH = 64
MAX_MESSAGE_LENGTH = 300
MAX_ADMIN_TEXT_LENGTH = 1500
# Slack limits a section's text to 3000 characters and a message to 50 blocks.
MAX_SECTION_CHARS = 3000
MAX_LINE_SECTIONS = 45

RECOVERED_EMOJI = ":white_check_mark:"
SUPERSEDED_EMOJI = ":arrow_right:"
FLAPPING_EMOJI = ":repeat:"
ADMIN_EMOJI = ":gear:"


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """A message for chat.postMessage or chat.update: ``text`` is the fallback."""

    text: str
    blocks: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def row_name(app: str, domain: str) -> str:
    return (
        f"{mrkdwn_text(app, MAX_NAME_LENGTH)} · {mrkdwn_text(domain, MAX_NAME_LENGTH)}"
    )


def _time(value: str, tz: tzinfo, now: datetime) -> str:
    return format_time(datetime.fromisoformat(value), tz, now)


def _emoji(line: Line) -> str:
    if line.state == "recovered":
        return RECOVERED_EMOJI
    if line.state == "superseded":
        return SUPERSEDED_EMOJI
    if line.state == "flapping":
        return FLAPPING_EMOJI
    if line.stuck_limit is not None:
        return STUCK_EMOJI
    return STATUS_EMOJI[Status(line.status)]


def _label(line: Line, tz: tzinfo, now: datetime) -> str:
    if line.state == "recovered":
        return f"recovered, OK at {_time(line.at, tz, now)}"
    if line.state == "superseded":
        return f"{line.status}, a newer run has its own alert"
    if line.state == "flapping":
        return "flapping, alerts paused"
    if line.stuck_limit is not None:
        running = now - datetime.fromisoformat(line.since)
        return (
            f"Stuck, Loading for {format_duration(running.total_seconds())} "
            f"(max runtime {format_duration(line.stuck_limit)})"
        )
    return f"{line.status} at {_time(line.at, tz, now)}"


def line_details(line: Line, tz: tzinfo, now: datetime) -> str:
    """Format a row's status, job id, duration, time with zone and message,
    without its name."""
    parts = [_label(line, tz, now)]
    if line.job_id:
        parts.append(f"job {mrkdwn_text(line.job_id, MAX_JOB_LENGTH)}")
    if line.took is not None:
        parts.append(f"took {format_duration(line.took)}")
    text = " · ".join(parts)
    if line.message and line.state == "open":
        text += f" — {mrkdwn_text(line.message, MAX_MESSAGE_LENGTH)}"
    return text


def line_text(line: Line, tz: tzinfo, now: datetime) -> str:
    """Format one row as a mrkdwn line."""
    name = row_name(line.app, line.domain)
    return f"{_emoji(line)} *{name}*: {line_details(line, tz, now)}"


_HEADLINES = {
    Status.ERROR.value: "EPM job failed",
    Status.WARNING.value: "EPM job finished with warnings",
    Status.LOADING.value: "EPM job running again",
    Status.BLANK.value: "EPM job reset",
    Status.OK.value: "EPM job OK",
}


def _headline(lines: Sequence[Line]) -> str:
    open_lines = [line for line in lines if line.state == "open"]
    if len(lines) == 1:
        line = lines[0]
        name = row_name(line.app, line.domain)
        if line.state == "recovered":
            return f"{RECOVERED_EMOJI} Recovered: {name}"
        if not open_lines:
            return f"{_emoji(line)} Closed: {name}"
        if line.stuck_limit is not None:
            return f"{STUCK_EMOJI} EPM job stuck: {name}"
        return f"{_emoji(line)} {_HEADLINES[line.status]}: {name}"
    if not open_lines:
        return (
            f"{RECOVERED_EMOJI} Closed: all {len(lines)} EPM jobs recovered or moved on"
        )
    worst = _worst(open_lines)
    closed = len(lines) - len(open_lines)
    suffix = f" ({closed} recovered or moved on)" if closed else ""
    if len(open_lines) == 1:
        return f"{_emoji(worst)} 1 EPM job needs attention{suffix}"
    return f"{_emoji(worst)} {len(open_lines)} EPM jobs need attention{suffix}"


def _worst(lines: Sequence[Line]) -> Line:
    def rank(line: Line) -> int:
        if line.status == Status.ERROR.value:
            return 0
        if line.stuck_limit is not None:
            return 1
        if line.status == Status.WARNING.value:
            return 2
        return 3

    return min(lines, key=rank)


def _context(tz: tzinfo, now: datetime, link: str | None) -> dict[str, Any]:
    zone = now.astimezone(tz).tzname() or "UTC"
    where = f"<{link}|Open the status board>" if link else "See the status board."
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"Times in {zone}. {where}"}],
    }


def _sections(lines: Sequence[str]) -> list[dict[str, Any]]:
    """Pack lines into as few sections as the 3000-character limit allows."""
    chunks: list[str] = []
    for text in lines:
        if chunks and len(chunks[-1]) + 1 + len(text) <= MAX_SECTION_CHARS:
            chunks[-1] += "\n" + text
        else:
            chunks.append(text[:MAX_SECTION_CHARS])
    if len(chunks) > MAX_LINE_SECTIONS:
        dropped = len(chunks) - MAX_LINE_SECTIONS + 1
        chunks = chunks[: MAX_LINE_SECTIONS - 1]
        chunks.append(f"… {dropped} more section(s) of rows: see the status board")
    return [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks]


def render_group(
    group: Group, *, tz: tzinfo, now: datetime, link: str | None
) -> AlertMessage:
    """Render a parent alert message: a headline and one line per row."""
    headline = _headline(group.lines)
    lines = [line_text(line, tz, now) for line in group.lines]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
        *_sections(lines),
        _context(tz, now, link),
    ]
    if len(group.lines) == 1:
        text = f"{headline} — {line_details(group.lines[0], tz, now)}"
    else:
        names = ", ".join(
            f"{row_name(line.app, line.domain)} ({line.status})" for line in group.lines
        )
        text = f"{headline}: {names}"
    return AlertMessage(text[:MAX_SECTION_CHARS], blocks)


def render_change_reply(
    line: Line, previous_status: str, *, tz: tzinfo, now: datetime
) -> str:
    """Render the thread reply for a later update of an alerted run."""
    change = (
        f"{previous_status} → {line.status}"
        if previous_status != line.status
        else f"still {line.status}"
    )
    text = (
        f"{_emoji(line)} *{row_name(line.app, line.domain)}*: {change} at "
        f"{_time(line.at, tz, now)}"
    )
    if line.job_id:
        text += f" · job {mrkdwn_text(line.job_id, MAX_JOB_LENGTH)}"
    if line.message:
        text += f" — {mrkdwn_text(line.message, MAX_MESSAGE_LENGTH)}"
    return text


def render_recovery_reply(line: Line, *, tz: tzinfo, now: datetime) -> str:
    text = (
        f"{RECOVERED_EMOJI} *{row_name(line.app, line.domain)}* recovered: OK at "
        f"{_time(line.at, tz, now)}"
    )
    if line.job_id:
        text += f" · job {mrkdwn_text(line.job_id, MAX_JOB_LENGTH)}"
    if line.took is not None:
        text += f" · took {format_duration(line.took)}"
    return text


def render_stuck_reply(line: Line, *, tz: tzinfo, now: datetime) -> str:
    assert line.stuck_limit is not None
    running = (now - datetime.fromisoformat(line.since)).total_seconds()
    return (
        f"{STUCK_EMOJI} *{row_name(line.app, line.domain)}* is stuck: Loading for "
        f"{format_duration(running)}, longer than its max runtime of "
        f"{format_duration(line.stuck_limit)}."
    )


def render_superseded_reply(line: Line, *, tz: tzinfo, now: datetime) -> str:
    job = f" (job {mrkdwn_text(line.job_id, MAX_JOB_LENGTH)})" if line.job_id else ""
    return (
        f"{SUPERSEDED_EMOJI} A new run of *{row_name(line.app, line.domain)}*{job} is "
        f"{line.status} at {_time(line.at, tz, now)}; it has its own alert."
    )


def render_flapping_reply(app: str, domain: str) -> str:
    return (
        f"{FLAPPING_EMOJI} *{row_name(app, domain)}* is flapping: updates of it are "
        "paused, see the flapping notice."
    )


def render_flapping_notice(
    app: str,
    domain: str,
    *,
    flips: int,
    window_seconds: float,
    tz: tzinfo,
    now: datetime,
    link: str | None,
    ended_status: str | None = None,
) -> AlertMessage:
    """Render the notice for a flapping row, or its end with ``ended_status``."""
    name = row_name(app, domain)
    window = format_duration(window_seconds)
    if ended_status is None:
        headline = f"{FLAPPING_EMOJI} Flapping: {name}"
        body = (
            f"*{name}* changed between failure and success {flips} times within "
            f"{window}. Alerts for it are paused until it has been stable for {window}."
        )
    else:
        headline = f"{RECOVERED_EMOJI} No longer flapping: {name}"
        body = (
            f"*{name}* has been stable for {window} and is {ended_status} now. "
            "Alerts for it have resumed."
        )
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        _context(tz, now, link),
    ]
    return AlertMessage(f"{headline}. {body}", blocks)


def render_flapping_end_reply(
    app: str, domain: str, status: str, *, window_seconds: float
) -> str:
    return (
        f"{RECOVERED_EMOJI} *{row_name(app, domain)}* has been stable for "
        f"{format_duration(window_seconds)} and is {status} now: alerts resume."
    )


def render_admin(
    text: str,
    *,
    raised_at: str,
    tz: tzinfo,
    now: datetime,
    resolved_at: str | None = None,
) -> AlertMessage:
    """Render an alert about EPMPulse itself. ``text`` states the problem and fix."""
    body = mrkdwn_text(text, MAX_ADMIN_TEXT_LENGTH)
    if resolved_at is None:
        headline = f"{ADMIN_EMOJI} EPMPulse needs attention"
        when = f"Since {_time(raised_at, tz, now)}."
    else:
        headline = f"{RECOVERED_EMOJI} Resolved: EPMPulse problem"
        when = f"From {_time(raised_at, tz, now)} to {_time(resolved_at, tz, now)}."
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": when}]},
    ]
    return AlertMessage(f"{headline}: {body} {when}", blocks)


def render_admin_resolved_reply(resolved_at: str, *, tz: tzinfo, now: datetime) -> str:
    return f"{RECOVERED_EMOJI} Resolved at {_time(resolved_at, tz, now)}."
