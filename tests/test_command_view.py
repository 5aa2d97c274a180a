"""The Block Kit replies of /epmpulse: status, history, help, sync, errors."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from canvas.command_view import (
    help_message,
    history_message,
    status_message,
    sync_message,
    sync_notice,
    unknown_name_message,
)
from store.history import HistoryEvent
from store.models import Status
from tests.fakes.slack_api import MAX_MESSAGE_BLOCKS, check_blocks
from tests.slack_boards import NOW, boards_of, large_boards, record


def all_text(message: dict[str, Any]) -> str:
    found = []
    for block in message["blocks"]:
        if "text" in block:
            found.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), str):
                found.append(element["text"])
    return "\n".join(found)


def assert_valid_message(message: dict[str, Any]) -> None:
    assert check_blocks(message["blocks"], "/blocks", MAX_MESSAGE_BLOCKS) == []
    assert message["text"]


def event(
    status: str, minutes_ago: int, *, applied: bool = True, job_id: str | None = None
) -> HistoryEvent:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return HistoryEvent(
        app="Planning",
        domain="Actual",
        status=status,
        timestamp=at,
        received_at=at,
        job_id=job_id,
        message=f"{status} message",
        applied=applied,
    )


def test_status_lists_failures_first() -> None:
    boards = boards_of(
        record("Alpha", "Actual", Status.OK),
        record("Beta", "Actual", Status.ERROR),
    )

    message = status_message(boards, tz=UTC, now=NOW)

    text = all_text(message)
    assert text.index("*Beta*") < text.index("*Alpha*")
    assert message["text"] == "EPM job status: 1 Error, 1 OK"
    assert_valid_message(message)


def test_status_of_one_app() -> None:
    boards = boards_of(
        record("Planning", "Actual", Status.OK),
        record("FCCS", "Actual", Status.ERROR),
    )

    message = status_message(boards, tz=UTC, now=NOW, app="Planning")

    text = all_text(message)
    assert message["blocks"][0]["text"]["text"] == "EPM job status: Planning"
    assert "*Planning*" in text
    assert "FCCS" not in text


def test_status_shows_banner() -> None:
    message = status_message(boards_of(), tz=UTC, now=NOW, banner="maintenance")

    assert "maintenance" in all_text(message)


def test_status_of_large_board_fits_message_limit() -> None:
    message = status_message(large_boards(300), tz=UTC, now=NOW)

    assert len(message["blocks"]) <= MAX_MESSAGE_BLOCKS
    assert "too large for one message" in all_text(message)
    assert_valid_message(message)


def test_history_lists_events_newest_first() -> None:
    events = [event("Error", 1, job_id="42"), event("Loading", 30)]

    message = history_message("Planning", "Actual", events, limit=10, tz=UTC, now=NOW)

    text = all_text(message)
    assert message["blocks"][0]["text"]["text"] == "History of Planning / Actual"
    assert "`11:59 UTC` :x: Error · job 42 · Error message" in text
    assert text.index("11:59 UTC") < text.index("11:30 UTC")
    assert "Showing the last" not in text
    assert_valid_message(message)


def test_history_marks_out_of_order_update() -> None:
    message = history_message(
        "Planning", "Actual", [event("OK", 3, applied=False)], limit=10, tz=UTC, now=NOW
    )

    assert "not applied: older than the status shown then" in all_text(message)


def test_history_at_limit_says_how_to_see_more() -> None:
    events = [event("OK", minute) for minute in range(3)]

    message = history_message("Planning", "Actual", events, limit=3, tz=UTC, now=NOW)

    assert "Showing the last 3" in all_text(message)


def test_history_without_events() -> None:
    message = history_message("Planning", "Actual", [], limit=10, tz=UTC, now=NOW)

    assert "No updates of Planning / Actual recorded yet." in all_text(message)
    assert_valid_message(message)


def test_help_lists_every_subcommand() -> None:
    message = help_message(extra_usage=[("watch <app>", "follow a job")])

    text = all_text(message)
    for usage in ("status [app]", "history <app> <domain> [n]", "sync", "help"):
        assert f"`/epmpulse {usage}`" in text
    assert "`/epmpulse watch <app>`: follow a job" in text


def test_help_starts_with_problem() -> None:
    message = help_message("Unknown subcommand `x`.")

    assert message["blocks"][0]["text"]["text"] == ":warning: Unknown subcommand `x`."
    assert message["text"].startswith("Unknown subcommand")


def test_unknown_app_names_close_match_and_known_apps() -> None:
    message = unknown_name_message("app", "Planing", ["Planning", "FCCS"], "Planning")

    assert all_text(message) == (
        ":warning: Unknown app `Planing`. Did you mean *Planning*? "
        "Known apps: Planning, FCCS."
    )


def test_unknown_app_escapes_name() -> None:
    message = unknown_name_message("app", "<!here>", [], None)

    assert "&lt;!here&gt;" in all_text(message)
    assert "No apps have reported yet." in all_text(message)


def test_sync_message_links_published_canvas() -> None:
    results = [
        {"board": "main", "ok": True, "where": "F1", "error": None},
        {"board": "arcs", "ok": False, "where": "canvas F2", "error": "ratelimited"},
    ]

    message = sync_message(results, {"main": "https://acme/docs/T/F1"})

    text = all_text(message)
    assert (
        ":white_check_mark: *main* board published to <https://acme/docs/T/F1|F1>"
        in (text)
    )
    assert ":x: *arcs* board not published: ratelimited" in text
    assert message["text"] == "Sync failed"


def test_sync_notice_has_time_and_results() -> None:
    notice = sync_notice(
        [{"board": "main", "ok": True, "where": "F1"}], {}, tz=UTC, now=NOW
    )

    assert notice == (
        "*Canvases synced at 12:00 UTC*\n"
        ":white_check_mark: *main* board published to F1"
    )


def test_fallback_text_escapes_outside_names() -> None:
    message = unknown_name_message("app", "<!channel>", [], None)

    assert message["text"] == "Unknown app &lt;!channel&gt;."
