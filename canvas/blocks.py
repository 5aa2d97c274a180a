"""Block Kit pieces shared by the App Home tab and the slash command replies.

Pure functions: board views in, block dicts out. Outside text (app and domain
names, job ids, messages) is escaped here with ``mrkdwn_text``, once.

Slack's documented limits that these helpers respect: 3,000 characters of section
text and 150 characters of header text. The number of blocks per surface (100 in
a Home tab, 50 in a message) is the caller's ``BlockBudget``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import Any

from canvas.escape import mrkdwn_text, plain_text
from canvas.render import (
    MAX_DETAILS_LENGTH,
    MAX_JOB_LENGTH,
    MAX_NAME_LENGTH,
    SUMMARY_EMOJI,
    SUMMARY_ORDER,
    format_time,
    row_details,
    status_cell,
)
from store.board import AppView, BoardView, RowView, failures_first
from store.durations import format_duration
from store.models import Status

Block = dict[str, Any]

MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_BUTTON_TEXT_CHARS = 75


def header(text: str) -> Block:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": plain_text(text, MAX_HEADER_CHARS)},
    }


def section(text: str) -> Block:
    """A mrkdwn section; ``text`` must already be escaped. Longer text is cut."""
    if len(text) > MAX_SECTION_CHARS:
        text = text[: MAX_SECTION_CHARS - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def divider() -> Block:
    return {"type": "divider"}


def button(
    action_id: str,
    text: str,
    *,
    value: str | None = None,
    url: str | None = None,
    style: str | None = None,
) -> Block:
    element: Block = {
        "type": "button",
        "action_id": action_id,
        "text": {
            "type": "plain_text",
            "text": plain_text(text, MAX_BUTTON_TEXT_CHARS),
        },
    }
    if value is not None:
        element["value"] = value
    if url is not None:
        element["url"] = url
    if style is not None:
        element["style"] = style
    return element


class BlockBudget:
    """Counts blocks and their JSON size against a surface's limits.

    The size is measured as ``json.dumps`` writes it (non-ASCII as ``\\uXXXX``),
    which is never less than the UTF-8 size Slack receives.
    """

    def __init__(self, max_blocks: int, max_bytes: int) -> None:
        self.max_blocks = max_blocks
        self.max_bytes = max_bytes
        self.blocks = 0
        self.bytes = 0

    def fits(self, blocks: Sequence[Block], reserve: int = 0) -> bool:
        size = sum(len(json.dumps(block)) for block in blocks)
        return (
            self.blocks + len(blocks) + reserve <= self.max_blocks
            and self.bytes + size <= self.max_bytes
        )

    def take(self, blocks: Sequence[Block], reserve: int = 0) -> bool:
        """Count ``blocks`` if they fit, leaving ``reserve`` blocks free."""
        if not self.fits(blocks, reserve):
            return False
        self.blocks += len(blocks)
        self.bytes += sum(len(json.dumps(block)) for block in blocks)
        return True


# --- rows and apps ----------------------------------------------------------


def _rank(row: RowView) -> int:
    if row.is_failure:
        return 0
    if row.status is Status.LOADING:
        return 1
    return 2


def needs_attention(row: RowView) -> bool:
    """Tell whether a row failed, is stuck or runs: a summary still shows those."""
    return _rank(row) < 2


def apps_failures_first(boards: Iterable[BoardView]) -> list[AppView]:
    """List the apps of every board: those with failures first, then those with
    running jobs, each group in board order."""
    apps = [app for board in boards for app in board.apps]
    return sorted(apps, key=lambda app: min((_rank(r) for r in app.rows), default=2))


def row_line(row: RowView, tz: tzinfo, now: datetime) -> str:
    """Format a row as one mrkdwn line: domain, status and for how long, job id,
    details."""
    emoji, status = status_cell(row).split(" ", 1)
    domain = f"{emoji} *{mrkdwn_text(row.domain, MAX_NAME_LENGTH)}*"
    record = row.record
    if record is not None and record.status is not Status.LOADING:
        age = format_duration(max(0.0, (now - record.since).total_seconds()))
        status += f" for {age} (since {format_time(record.since, tz, now)})"
    parts = [domain, status]
    if record is not None and record.job_id:
        parts.append(f"job {mrkdwn_text(record.job_id, MAX_JOB_LENGTH)}")
    details = mrkdwn_text(row_details(row, now), MAX_DETAILS_LENGTH)
    if details:
        parts.append(details)
    return " · ".join(parts)


def pack_sections(
    title: str, lines: Sequence[str], note: str | None = None
) -> list[Block]:
    """Put ``lines`` under a bold ``title`` into as few sections as the 3,000
    character limit allows. The first section adds ``note`` after the title; later
    ones repeat the title with "(continued)". Each section has one line per entry
    after its title line."""
    sections: list[Block] = []
    current = f"*{title}*" + (f" · {note}" if note else "")
    count = 0
    for line in lines:
        if count and len(current) + 1 + len(line) > MAX_SECTION_CHARS:
            sections.append(section(current))
            current = f"*{title}* (continued)"
            count = 0
        current += "\n" + line
        count += 1
    sections.append(section(current))
    return sections


def _entries(blocks: Sequence[Block]) -> int:
    return sum(block["text"]["text"].count("\n") for block in blocks)


def app_sections(
    app: AppView, tz: tzinfo, now: datetime, rows: Sequence[RowView] | None = None
) -> list[Block]:
    """Build the sections of one app, rows failures first (``rows`` picks some)."""
    chosen = failures_first(app.rows if rows is None else rows)
    lines = [row_line(row, tz, now) for row in chosen]
    return pack_sections(mrkdwn_text(app.title, MAX_NAME_LENGTH), lines)


def status_counts(rows: Iterable[RowView]) -> str:
    """Count rows per status, as ``:x: 2 Error · :white_check_mark: 5 OK``."""
    counts: Counter[str] = Counter(
        "Stuck" if row.stuck else row.status.value for row in rows
    )
    parts = [
        f"{SUMMARY_EMOJI[name]} {counts[name]} {name}"
        for name in SUMMARY_ORDER
        if counts.get(name)
    ]
    return " · ".join(parts) if parts else "no rows"


def last_update_line(boards: Sequence[BoardView], tz: tzinfo, now: datetime) -> str:
    updated = [board.updated_at for board in boards if board.updated_at]
    shown = f"shown at {format_time(now, tz, now)}"
    if not updated:
        return f"No updates yet · {shown}"
    return f"Last update {format_time(max(updated), tz, now)} · {shown}"


EMPTY_BOARD_TEXT = (
    "No job status yet. EPM business rules post to `/api/v1/status`; the rows "
    "appear here as they report."
)


def layout_apps(
    apps: Sequence[AppView],
    budget: BlockBudget,
    tz: tzinfo,
    now: datetime,
    *,
    too_large_note: str,
) -> list[Block]:
    """Lay out ``apps`` within ``budget``: every row when it fits, else a summary.

    The summary lists the rows that need attention (failed, stuck, running) one by
    one and the other apps one line each, and ends with ``too_large_note`` and a
    count of whatever still did not fit. One block of the budget is kept for that
    note, so the result always fits.
    """
    if not apps:
        empty = [section(EMPTY_BOARD_TEXT)]
        return empty if budget.take(empty) else []

    detailed = [block for app in apps for block in app_sections(app, tz, now)]
    if budget.fits(detailed):
        budget.take(detailed)
        return detailed
    return _summarise(apps, budget, tz, now, too_large_note)


def _summarise(
    apps: Sequence[AppView],
    budget: BlockBudget,
    tz: tzinfo,
    now: datetime,
    too_large_note: str,
) -> list[Block]:
    blocks: list[Block] = []
    left_out_rows = 0
    for app in apps:
        urgent = [row for row in app.rows if needs_attention(row)]
        if not urgent:
            continue
        others = [row for row in app.rows if not needs_attention(row)]
        note = f"other domains: {status_counts(others)}" if others else None
        lines = [row_line(row, tz, now) for row in failures_first(urgent)]
        sections = pack_sections(mrkdwn_text(app.title, MAX_NAME_LENGTH), lines, note)
        for index, block in enumerate(sections):
            # Once a section does not fit, later ones are left out too, so the
            # shown rows stay in order.
            if left_out_rows or not budget.take([block], reserve=1):
                left_out_rows += _entries(sections[index:])
                break
            blocks.append(block)

    quiet_lines = [
        f"*{mrkdwn_text(app.title, MAX_NAME_LENGTH)}* {status_counts(app.rows)}"
        for app in apps
        if not any(needs_attention(row) for row in app.rows)
    ]
    left_out_apps = 0
    packed = pack_sections("Other apps", quiet_lines) if quiet_lines else []
    for index, block in enumerate(packed):
        if not budget.take([block], reserve=1):
            left_out_apps = _entries(packed[index:])
            break
        blocks.append(block)

    note = too_large_note
    if left_out_rows:
        note += f" {left_out_rows} failed or running row(s) did not fit."
    if left_out_apps:
        note += f" {left_out_apps} other app(s) did not fit."
    blocks.append(context(note))
    budget.take(blocks[-1:])
    return blocks
