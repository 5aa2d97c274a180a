"""The board as canvas markdown: summary, order, stuck rows, zones and escaping."""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import Any

from canvas.escape import ELLIPSIS
from canvas.render import MAX_DETAILS_LENGTH, render_board
from store.board import build_board
from store.catalog import AppConfig, Board, Catalog
from store.models import Record, Snapshot, Status

NOW = datetime(2026, 1, 31, 17, 0, tzinfo=UTC)
OPEN = Catalog()


def record(
    app: str,
    domain: str,
    status: Status,
    minutes_ago: float = 5,
    **fields: Any,
) -> Record:
    at = NOW - timedelta(minutes=minutes_ago)
    values: dict[str, Any] = {
        "timestamp": at,
        "received_at": at,
        "since": at,
    }
    values.update(fields)
    return Record(app=app, domain=domain, status=status, **values)


def snapshot(*records: Record) -> Snapshot:
    rows = {(r.app, r.domain): r for r in records}
    return Snapshot(MappingProxyType(rows), NOW)


def catalog(*apps: dict[str, Any]) -> Catalog:
    return Catalog(
        [AppConfig.model_validate(app) for app in apps], path=Path("apps.json")
    )


def render(
    snap: Snapshot,
    apps: Catalog = OPEN,
    *,
    board: Board = "main",
    tz: tzinfo = UTC,
    now: datetime = NOW,
    stuck_after: float = 7200,
    boards: tuple[Board, ...] = ("main", "arcs"),
) -> str:
    view = build_board(
        snap, apps, board, now=now, stuck_after=stuck_after, boards=boards
    )
    return render_board(view, tz=tz, now=now)


def table_rows(markdown: str) -> list[str]:
    lines = markdown.splitlines()
    return [line for line in lines if line.startswith("| ") and "---" not in line][1:]


def data_rows(markdown: str) -> list[str]:
    return [row for row in table_rows(markdown) if not row.startswith("| Domain ")]


def cells(row: str) -> list[str]:
    """Split a table row on the pipes that no backslash escapes."""
    parts = re.split(r"(?<!\\)\|", row)
    return [part.strip() for part in parts[1:-1]]


def unescaped_pipes(line: str) -> int:
    count = 0
    escaped = False
    for char in line:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            count += 1
    return count


def test_board_does_not_start_with_h1() -> None:
    out = render(snapshot(record("Planning", "Actual", Status.OK)))

    assert not out.startswith("#")
    assert out.startswith("**EPM job status**")
    assert not any(line.startswith("# ") for line in out.splitlines())


def test_summary_counts_statuses_and_names_zone() -> None:
    out = render(
        snapshot(
            record("Planning", "Actual", Status.OK, minutes_ago=30),
            record("Planning", "Forecast", Status.OK),
            record("FCCS", "Consolidation", Status.ERROR),
            record("FCCS", "Translation", Status.LOADING, minutes_ago=2),
        )
    )

    summary = out.splitlines()[0]
    assert "1 Error" in summary
    assert "1 Loading" in summary
    assert "2 OK" in summary
    assert "last update 16:58 UTC" in summary


def test_summary_without_updates() -> None:
    out = render(snapshot())

    assert "no updates yet" in out.splitlines()[0]
    assert "No job status yet" in out


def test_apps_follow_apps_json_order() -> None:
    apps = catalog(
        {"name": "FCCS", "display_name": "Financial Consolidation", "domains": ["A"]},
        {"name": "Planning", "domains": ["Actual"]},
    )
    out = render(
        snapshot(
            record("Planning", "Actual", Status.OK),
            record("FCCS", "A", Status.OK),
        ),
        apps,
    )

    headings = [line for line in out.splitlines() if line.startswith("## ")]
    assert headings == ["## Financial Consolidation", "## Planning"]


def test_unlisted_apps_follow_in_first_seen_order() -> None:
    out = render(
        snapshot(
            record("Zeta", "Actual", Status.OK),
            record("Alpha", "Actual", Status.OK),
        )
    )

    headings = [line for line in out.splitlines() if line.startswith("## ")]
    assert headings == ["## Zeta", "## Alpha"]


def test_configured_domains_without_updates_are_shown() -> None:
    apps = catalog({"name": "Planning", "domains": ["Actual", "Forecast", "Budget"]})

    out = render(snapshot(record("Planning", "Actual", Status.OK)), apps)

    rows = [cells(row) for row in data_rows(out)]
    assert [row[0] for row in rows] == ["Actual", "Forecast", "Budget"]
    assert rows[1][1] == ":white_circle: Blank"
    assert rows[1][4] == "no update yet"
    assert "2 Blank" in out.splitlines()[0]


def test_configured_app_without_updates_is_shown() -> None:
    apps = catalog({"name": "Planning", "domains": ["Actual"]})

    out = render(snapshot(), apps)

    assert "## Planning" in out


def test_row_shows_status_since_job_and_details() -> None:
    out = render(
        snapshot(
            record(
                "Planning",
                "Actual",
                Status.OK,
                minutes_ago=10,
                job_id="4711",
                message="Loaded 1,204 rows",
                run_started_at=NOW - timedelta(minutes=15),
                run_finished_at=NOW - timedelta(minutes=10),
            )
        )
    )

    row = cells(data_rows(out)[0])
    assert row == [
        "Actual",
        ":white_check_mark: OK",
        "16:50 UTC",
        "4711",
        "took 5m · Loaded 1,204 rows",
    ]


def test_running_row_shows_running_time() -> None:
    out = render(
        snapshot(
            record(
                "Planning",
                "Actual",
                Status.LOADING,
                minutes_ago=12,
                run_started_at=NOW - timedelta(minutes=12),
            )
        )
    )

    assert "running for 12m" in cells(data_rows(out)[0])[4]


def test_time_from_another_day_shows_date() -> None:
    out = render(snapshot(record("Planning", "Actual", Status.OK, minutes_ago=1440)))

    assert cells(data_rows(out)[0])[2] == "Jan 30 17:00 UTC"


def test_loading_past_max_runtime_is_stuck() -> None:
    out = render(
        snapshot(record("Planning", "Actual", Status.LOADING, minutes_ago=180)),
        stuck_after=7200,
    )

    row = cells(data_rows(out)[0])
    assert row[1] == ":rotating_light: Stuck"
    assert row[4].startswith("STUCK: running longer than 2h 00m")
    assert "1 Stuck" in out.splitlines()[0]
    assert "Loading" not in out.splitlines()[0]


def test_domain_max_runtime_overrides_default() -> None:
    apps = catalog(
        {
            "name": "Planning",
            "domains": [{"name": "Actual", "max_runtime": "30m"}, "Forecast"],
        }
    )
    out = render(
        snapshot(
            record("Planning", "Actual", Status.LOADING, minutes_ago=45),
            record("Planning", "Forecast", Status.LOADING, minutes_ago=45),
        ),
        apps,
        stuck_after=7200,
    )

    rows = [cells(row) for row in data_rows(out)]
    assert rows[0][1] == ":rotating_light: Stuck"
    assert rows[1][1] == ":hourglass_flowing_sand: Loading"


def test_failed_row_is_never_stuck() -> None:
    out = render(
        snapshot(record("Planning", "Actual", Status.ERROR, minutes_ago=600)),
        stuck_after=60,
    )

    assert cells(data_rows(out)[0])[1] == ":x: Error"


def test_winter_time_names_est() -> None:
    tz = zoneinfo.ZoneInfo("America/New_York")

    out = render(snapshot(record("Planning", "Actual", Status.OK)), tz=tz)

    assert "last update 11:55 EST" in out
    assert cells(data_rows(out)[0])[2] == "11:55 EST"


def test_summer_time_names_edt() -> None:
    tz = zoneinfo.ZoneInfo("America/New_York")
    july = datetime(2026, 7, 1, 17, 0, tzinfo=UTC)
    snap = snapshot(Record("Planning", "Actual", Status.OK, july, july, july))

    out = render(snap, tz=tz, now=july)

    assert "13:00 EDT" in out


def test_render_is_pure() -> None:
    snap = snapshot(
        record("Planning", "Actual", Status.LOADING, minutes_ago=30),
        record("FCCS", "Consolidation", Status.ERROR, message="failed"),
    )

    assert render(snap) == render(snap)


def test_arcs_app_goes_to_arcs_board() -> None:
    snap = snapshot(
        record("Planning", "Actual", Status.OK),
        record("ARCS", "Balances", Status.OK),
    )

    main = render(snap, board="main")
    arcs = render(snap, board="arcs")

    assert "## ARCS" not in main
    assert "## ARCS" in arcs
    assert "## Planning" not in arcs


def test_arcs_falls_back_to_main_board() -> None:
    snap = snapshot(record("ARCS", "Balances", Status.OK))

    main = render(snap, board="main", boards=("main",))

    assert "## ARCS" in main


HOSTILE = (
    "a | b\nc\r\n| x | y |  [x](http://evil) ![](@U123) <!channel> <@U123> "
    "www.evil.com ![](#C0123ABCD) # heading"
)


def test_webhook_text_cannot_break_table() -> None:
    out = render(
        snapshot(
            record(
                "Plan|ning",
                "Act|ual\n| x |",
                Status.ERROR,
                job_id="1|2",
                message=HOSTILE,
            )
        )
    )

    rows = data_rows(out)
    assert len(rows) == 1
    assert unescaped_pipes(rows[0]) == 6
    assert len(cells(rows[0])) == 5


def test_webhook_text_cannot_link_mention_or_embed() -> None:
    out = render(snapshot(record("Planning", "Actual", Status.ERROR, message=HOSTILE)))

    details = cells(data_rows(out)[0])[4]
    assert "](" not in details
    assert "![" not in details
    assert re.search(r"(?<!\\)<[!@#]", details) is None
    assert "www." not in details
    assert re.search(r"[a-z]://", details) is None


def test_app_title_cannot_add_heading_or_link() -> None:
    out = render(snapshot(record("[x](http://evil)\n# H1", "Actual", Status.OK)))

    headings = [line for line in out.splitlines() if line.startswith("#")]
    assert len(headings) == 1
    assert headings[0].startswith("## ")
    assert "](" not in headings[0]


def test_long_details_are_cut_with_ellipsis() -> None:
    out = render(
        snapshot(record("Planning", "Actual", Status.ERROR, message="word " * 200))
    )

    details = cells(data_rows(out)[0])[4]
    assert details.endswith(ELLIPSIS)
    assert len(details) <= MAX_DETAILS_LENGTH


def test_format_time_shows_other_year() -> None:
    from zoneinfo import ZoneInfo

    from canvas.render import format_time

    tz = ZoneInfo("UTC")
    now = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)

    assert format_time(now, tz, now) == "18:00 UTC"
    assert format_time(now - timedelta(days=2), tz, now) == "Dec 02 18:00 UTC"
    assert format_time(datetime(1970, 1, 1, tzinfo=UTC), tz, now) == (
        "Jan 01 1970 00:00 UTC"
    )
