"""The App Home renderer: layout, order, escaping and Slack's limits."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from canvas.blocks import MAX_SECTION_CHARS, header
from canvas.home import (
    ACTION_OPEN_CANVAS_PREFIX,
    ACTION_REFRESH,
    ACTION_SYNC,
    CanvasLink,
    canvas_url,
    render_home,
)
from store.models import Status
from tests.fakes.slack_api import MAX_HOME_BLOCKS, MAX_VIEW_JSON_BYTES, check_blocks
from tests.slack_boards import NOW, boards_of, large_boards, record


def texts(view: dict[str, Any]) -> list[str]:
    found = []
    for block in view["blocks"]:
        if "text" in block:
            found.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), str):
                found.append(element["text"])
    return found


def all_text(view: dict[str, Any]) -> str:
    return "\n".join(texts(view))


def assert_valid_home(view: dict[str, Any]) -> None:
    assert check_blocks(view["blocks"], "/view/blocks", MAX_HOME_BLOCKS) == []
    assert len(json.dumps(view).encode()) <= MAX_VIEW_JSON_BYTES


def test_home_starts_with_header_update_and_summary() -> None:
    boards = boards_of(
        record("Planning", "Actual", Status.ERROR),
        record("Planning", "Budget", Status.OK),
    )

    view = render_home(boards, tz=UTC, now=NOW)

    assert view["type"] == "home"
    assert view["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "EPM job status"},
    }
    assert view["blocks"][1]["elements"][0]["text"] == (
        "Last update 11:55 UTC · shown at 12:00 UTC"
    )
    assert view["blocks"][2]["text"]["text"] == (
        ":x: 1 Error · :white_check_mark: 1 OK"
    )
    assert_valid_home(view)


def test_home_has_refresh_sync_and_canvas_buttons() -> None:
    link = CanvasLink("main", "EPM status", "https://acme.slack.com/docs/T1/F1")

    view = render_home(boards_of(), tz=UTC, now=NOW, links=[link])

    actions = next(b for b in view["blocks"] if b["type"] == "actions")
    ids = [element["action_id"] for element in actions["elements"]]
    assert ids == [ACTION_REFRESH, ACTION_SYNC, ACTION_OPEN_CANVAS_PREFIX + "main"]
    assert actions["elements"][2]["url"] == "https://acme.slack.com/docs/T1/F1"
    assert actions["elements"][2]["text"]["text"] == "Open EPM status"


def test_canvas_url_joins_workspace_team_and_canvas() -> None:
    assert canvas_url("https://acme.slack.com/", "T1", "F2") == (
        "https://acme.slack.com/docs/T1/F2"
    )
    assert canvas_url("https://acme.slack.com", "T1", "F2") == (
        "https://acme.slack.com/docs/T1/F2"
    )


def test_home_lists_failing_apps_first() -> None:
    boards = boards_of(
        record("Alpha", "Actual", Status.OK),
        record("Beta", "Actual", Status.LOADING),
        record("Gamma", "Actual", Status.ERROR),
    )

    view = render_home(boards, tz=UTC, now=NOW)

    titles = [t.split("\n")[0] for t in texts(view) if t.startswith("*")]
    assert titles == ["*Gamma*", "*Beta*", "*Alpha*"]


def test_home_lists_failing_rows_first_within_app() -> None:
    boards = boards_of(
        record("Planning", "Actual", Status.OK),
        record("Planning", "Budget", Status.WARNING),
    )

    view = render_home(boards, tz=UTC, now=NOW)

    app = next(t for t in texts(view) if t.startswith("*Planning*"))
    lines = app.split("\n")
    assert lines[1].startswith(":warning: *Budget*")
    assert lines[2].startswith(":white_check_mark: *Actual*")


def test_home_row_shows_status_age_job_and_message() -> None:
    boards = boards_of(
        record(
            "FCCS",
            "Consolidation",
            Status.ERROR,
            minutes_ago=12,
            job_id="4711",
            message="Rule failed",
        )
    )

    view = render_home(boards, tz=UTC, now=NOW)

    assert (
        ":x: *Consolidation* · Error for 12m (since 11:48 UTC) · job 4711 · Rule failed"
    ) in all_text(view)


def test_home_running_row_shows_run_time() -> None:
    boards = boards_of(record("FCCS", "Actual", Status.LOADING, minutes_ago=3))

    view = render_home(boards, tz=UTC, now=NOW)

    assert ":hourglass_flowing_sand: *Actual* · Loading · running for 3m" in all_text(
        view
    )


def test_home_marks_stuck_row() -> None:
    boards = boards_of(
        record("FCCS", "Actual", Status.LOADING, minutes_ago=180), stuck_after=3600
    )

    view = render_home(boards, tz=UTC, now=NOW)

    assert ":rotating_light: *Actual* · Stuck" in all_text(view)
    assert ":rotating_light: 1 Stuck" in all_text(view)


def test_home_escapes_outside_text() -> None:
    boards = boards_of(
        record("Plan<ning>", "A&B", Status.ERROR, message="<!channel> see <@U1>")
    )

    text = all_text(render_home(boards, tz=UTC, now=NOW))

    assert "<!channel>" not in text
    assert "&lt;!channel&gt; see &lt;@U1&gt;" in text
    assert "*Plan&lt;ning&gt;*" in text
    assert "*A&amp;B*" in text


def test_home_without_rows_explains_how_they_arrive() -> None:
    view = render_home(boards_of(), tz=UTC, now=NOW)

    assert "No job status yet" in all_text(view)
    assert "No updates yet" in all_text(view)
    assert_valid_home(view)


def test_home_shows_banner_and_notice() -> None:
    view = render_home(
        boards_of(), tz=UTC, now=NOW, banner=":construction: maintenance", notice="hi"
    )

    assert texts(view)[3:5] == [":construction: maintenance", "hi"]


def test_home_splits_long_app_into_sections() -> None:
    long = "x" * 190
    boards = boards_of(
        *(record("Big", f"Domain{i:02d}", Status.OK, message=long) for i in range(40))
    )

    view = render_home(boards, tz=UTC, now=NOW)

    sections = [t for t in texts(view) if t.startswith("*Big*")]
    assert len(sections) > 1
    assert sections[1].startswith("*Big* (continued)")
    assert all(len(text) <= MAX_SECTION_CHARS for text in sections)
    assert sum(text.count("\n") for text in sections) == 40
    assert_valid_home(view)


def test_home_summarises_board_over_block_limit() -> None:
    boards = large_boards(150)

    view = render_home(boards, tz=UTC, now=NOW)

    text = all_text(view)
    assert len(view["blocks"]) <= MAX_HOME_BLOCKS
    assert "too large for the Home tab" in text
    assert "did not fit" not in text
    assert text.count(":x: *Domain1*") == 50
    assert "*Other apps*" in text
    assert "*App001* :white_check_mark: 5 OK" in text
    assert_valid_home(view)


def test_home_counts_rows_left_out_of_summary() -> None:
    boards = large_boards(1000)

    view = render_home(boards, tz=UTC, now=NOW)

    last = view["blocks"][-1]["elements"][0]["text"]
    assert len(view["blocks"]) == MAX_HOME_BLOCKS
    assert "failed or running row(s) did not fit" in last
    assert "other app(s) did not fit" in last
    assert_valid_home(view)


def test_home_stays_under_view_size_with_non_ascii_text() -> None:
    boards = boards_of(
        *(
            record(f"App{i:03d}", f"D{d}", Status.ERROR, message="Ünïcödé " * 30)
            for i in range(120)
            for d in range(5)
        )
    )

    view = render_home(boards, tz=UTC, now=NOW)

    assert_valid_home(view)


def test_header_cut_to_slack_limit() -> None:
    block = header("x" * 200)

    assert len(block["text"]["text"]) == 150
