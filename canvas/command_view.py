"""Block Kit replies of the ``/epmpulse`` command. Pure: data in, message out.

Each function returns a message dict for Bolt's ``respond``: ``text`` (the
notification fallback) and ``blocks``. Slack shows at most 50 blocks in a message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from canvas.blocks import (
    Block,
    BlockBudget,
    apps_failures_first,
    context,
    header,
    last_update_line,
    layout_apps,
    pack_sections,
    section,
    status_counts,
)
from canvas.escape import mrkdwn_text
from canvas.render import (
    MAX_DETAILS_LENGTH,
    MAX_JOB_LENGTH,
    MAX_NAME_LENGTH,
    STATUS_EMOJI,
    SUMMARY_ORDER,
    format_time,
)
from store.board import BoardView, RowView
from store.history import HistoryEvent
from store.models import Status

Message = dict[str, Any]

MAX_MESSAGE_BLOCKS = 50
# Slack documents no size limit for message blocks beyond the per-block ones; this
# cap keeps a reply the size of a Home view.
MAX_MESSAGE_BYTES = 240_000
MAX_FALLBACK_CHARS = 300

COMMAND = "/epmpulse"
USAGE: tuple[tuple[str, str], ...] = (
    (
        "status [app]",
        "the current board, failures and running jobs first; with an app, only "
        "that app",
    ),
    (
        "history <app> <domain> [n]",
        "the last n updates of one row, newest first (default 10, at most 100)",
    ),
    ("sync", "publish every canvas now and list what was published"),
    ("help", "this list"),
)

TOO_LARGE_NOTE = (
    "The board is too large for one message, so this shows failed, stuck and "
    "running jobs one by one and the other apps one line each. The canvas has "
    "every row."
)


def _message(text: str, blocks: Sequence[Block], *, escaped: bool = False) -> Message:
    # The fallback text is mrkdwn too, and may contain outside names.
    fallback = text if escaped else mrkdwn_text(text, MAX_FALLBACK_CHARS)
    return {"text": fallback, "blocks": list(blocks)}


def status_message(
    boards: Sequence[BoardView],
    *,
    tz: tzinfo,
    now: datetime,
    app: str | None = None,
    banner: str | None = None,
) -> Message:
    """Build the reply to ``status``: every board, or only ``app`` (its
    configured name).

    ``banner`` is escaped mrkdwn shown under the summary (e.g. EPM maintenance).
    """
    apps = apps_failures_first(boards)
    if app is not None:
        apps = [view for view in apps if view.name == app]
    title = "EPM job status"
    if app is not None and apps:
        title += f": {apps[0].title}"
    rows = [row for view in apps for row in view.rows]
    counts = status_counts(rows) if rows else "no rows"

    top = [
        header(title),
        context(last_update_line(boards, tz, now)),
        section(counts),
    ]
    if banner:
        top.append(section(banner))
    budget = BlockBudget(MAX_MESSAGE_BLOCKS, MAX_MESSAGE_BYTES)
    budget.take(top)
    body = layout_apps(apps, budget, tz, now, too_large_note=TOO_LARGE_NOTE)
    return _message(f"{title}: {_plain_counts(rows)}", top + body)


def _plain_counts(rows: Sequence[RowView]) -> str:
    if not rows:
        return "no rows yet"
    counts = Counter("Stuck" if row.stuck else row.status.value for row in rows)
    return ", ".join(
        f"{counts[name]} {name}" for name in SUMMARY_ORDER if counts.get(name)
    )


def history_message(
    app_title: str,
    domain: str,
    events: Sequence[HistoryEvent],
    *,
    limit: int,
    tz: tzinfo,
    now: datetime,
) -> Message:
    """Build the reply to ``history`` from a row's events, newest first (as
    ``read_history`` returns them)."""
    row = f"{app_title} / {domain}"
    title = f"History of {row}"
    blocks: list[Block] = [header(title)]
    if not events:
        blocks.append(section(f"No updates of {mrkdwn_text(row, 140)} recorded yet."))
        return _message(f"{title}: no updates yet", blocks)

    lines = [_event_line(event, tz, now) for event in events]
    sections = pack_sections(f"Last {len(events)} update(s), newest first", lines)
    budget = BlockBudget(MAX_MESSAGE_BLOCKS - 1, MAX_MESSAGE_BYTES)
    budget.take(blocks)
    for block in sections:
        if not budget.take([block]):
            break
        blocks.append(block)
    if len(events) == limit:
        blocks.append(
            context(
                f"Showing the last {limit}. `{COMMAND} history <app> <domain> <n>` "
                "shows up to 100."
            )
        )
    return _message(f"{title}: {len(events)} update(s)", blocks)


def _event_line(event: HistoryEvent, tz: tzinfo, now: datetime) -> str:
    try:
        emoji = STATUS_EMOJI[Status(event.status)]
    except ValueError:
        emoji = ":grey_question:"
    try:
        when = format_time(datetime.fromisoformat(event.timestamp), tz, now)
    except ValueError:
        when = mrkdwn_text(event.timestamp, 40)
    parts = [f"`{when}` {emoji} {mrkdwn_text(event.status, 20)}"]
    if event.job_id:
        parts.append(f"job {mrkdwn_text(event.job_id, MAX_JOB_LENGTH)}")
    if event.message:
        parts.append(mrkdwn_text(event.message, MAX_DETAILS_LENGTH))
    if not event.applied:
        parts.append("_not applied: older than the status shown then_")
    return " · ".join(parts)


def help_message(
    problem: str | None = None,
    extra_usage: Sequence[tuple[str, str]] = (),
) -> Message:
    """Build the usage of every subcommand, after ``problem`` (escaped mrkdwn)."""
    lines = [
        f"`{COMMAND} {usage}`: {description}"
        for usage, description in (*USAGE, *extra_usage)
    ]
    blocks: list[Block] = []
    if problem:
        blocks.append(section(f":warning: {problem}"))
    blocks += pack_sections(f"{COMMAND} subcommands", lines)
    text = f"{problem} See {COMMAND} help." if problem else f"{COMMAND} help"
    return _message(text, blocks, escaped=True)


def unknown_name_message(
    kind: str, name: str, known: Sequence[str], suggestion: str | None
) -> Message:
    """Build the reply for an app or domain (``kind``) that is not on the board."""
    shown = mrkdwn_text(name, MAX_NAME_LENGTH)
    text = f"Unknown {kind} `{shown}`."
    if suggestion:
        text += f" Did you mean *{mrkdwn_text(suggestion, MAX_NAME_LENGTH)}*?"
    if known:
        listed = ", ".join(mrkdwn_text(item, MAX_NAME_LENGTH) for item in known)
        text += f" Known {kind}s: {listed}."
    else:
        text += f" No {kind}s have reported yet."
    plain = f"Unknown {kind} {name}." + (
        f" Did you mean {suggestion}?" if suggestion else ""
    )
    return _message(plain, [section(f":warning: {text}")])


def sync_message(
    results: Sequence[Mapping[str, Any]], links: Mapping[str, str]
) -> Message:
    """Build the reply to ``sync``: one line per board, with a link to its canvas."""
    return _message(
        "Canvases published" if all(r.get("ok") for r in results) else "Sync failed",
        [section(sync_summary(results, links))],
    )


def sync_summary(results: Sequence[Mapping[str, Any]], links: Mapping[str, str]) -> str:
    """Describe each board's publish in one mrkdwn line: where it went, or why not."""
    if not results:
        return ":information_source: No boards to publish."
    lines = []
    for result in results:
        board = mrkdwn_text(str(result.get("board")), 20)
        where = mrkdwn_text(str(result.get("where") or ""), 200)
        url = links.get(str(result.get("board")))
        if result.get("ok"):
            target = f"<{url}|{where}>" if url else where
            lines.append(f":white_check_mark: *{board}* board published to {target}")
        else:
            error = mrkdwn_text(str(result.get("error") or "unknown error"), 300)
            lines.append(f":x: *{board}* board not published: {error}")
    return "\n".join(lines)


def sync_notice(
    results: Sequence[Mapping[str, Any]],
    links: Mapping[str, str],
    *,
    tz: tzinfo,
    now: datetime,
) -> str:
    """Build the Home tab notice shown after a Sync click."""
    return f"*Canvases synced at {format_time(now, tz, now)}*\n" + sync_summary(
        results, links
    )


def problem_message(problem: str) -> Message:
    """Build a one-line warning; ``problem`` is plain text and is escaped here."""
    return _message(problem, [section(f":warning: {mrkdwn_text(problem, 2000)}")])


def watch_message(app: str, domain: str, job_id: str) -> Message:
    """Build the reply to ``watch``: the job that EPMPulse now follows."""
    row = mrkdwn_text(f"{app} / {domain}", 140)
    job = mrkdwn_text(job_id, MAX_JOB_LENGTH)
    text = f"Watching EPM job {job_id} of {app} / {domain}"
    return _message(
        text,
        [
            section(
                f":eyes: Watching EPM job {job} of *{row}*. The board shows its "
                "status until the job finishes."
            )
        ],
    )


def error_message(subcommand: str) -> Message:
    name = mrkdwn_text(subcommand, 40)
    return _message(
        f"{COMMAND} {subcommand} failed",
        [
            section(
                f":warning: Sorry, `{COMMAND} {name}` failed because of an "
                "internal error. The EPMPulse server log has the details; try again "
                "in a minute."
            )
        ],
    )


def working_message(text: str) -> Message:
    """Build a short progress line; ``text`` is our own wording, not outside text."""
    return _message(text, [context(text)])
