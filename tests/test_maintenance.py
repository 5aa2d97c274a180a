"""The daily EPM maintenance window: parsing, midnight, both daylight-saving
changes, and the real server holding stuck alerts while showing the notice."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from store.maintenance import Maintenance, parse_maintenance
from tests.server_process import ServerProcess

NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- parsing -------------------------------------------------------------------


def test_parse_reads_times_and_zone() -> None:
    window = parse_maintenance("22:00-23:00 America/New_York")

    assert window.start.hour == 22
    assert window.end.hour == 23
    assert window.zone.key == "America/New_York"


def test_parse_accepts_en_dash_and_spaces() -> None:
    window = parse_maintenance(" 1:30 – 2:15  UTC ")

    assert window.describe() == "01:30-02:15 UTC"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("22:00 America/New_York", "start-end"),
        ("22:00-23:00", "start-end"),
        ("25:00-26:00 UTC", "hours are 0-23"),
        ("22:00-22:00 UTC", "equal"),
        ("22:00-23:00 Mars/Olympus", "unknown time zone"),
    ],
)
def test_parse_rejects_invalid_window(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_maintenance(text)


# --- membership ----------------------------------------------------------------


def test_window_contains_its_start_not_its_end() -> None:
    window = parse_maintenance("22:00-23:00 UTC")

    assert window.contains(utc("2025-06-01T22:00:00"))
    assert window.contains(utc("2025-06-01T22:59:59"))
    assert not window.contains(utc("2025-06-01T23:00:00"))
    assert not window.contains(utc("2025-06-01T21:59:59"))


def test_window_crossing_midnight() -> None:
    window = parse_maintenance("23:30-00:30 UTC")

    assert window.contains(utc("2025-06-01T23:45:00"))
    assert window.contains(utc("2025-06-02T00:15:00"))
    assert not window.contains(utc("2025-06-02T00:30:00"))
    assert not window.contains(utc("2025-06-01T12:00:00"))


def test_window_follows_spring_forward() -> None:
    # New York moves from EST (UTC-5) to EDT (UTC-4) on 2025-03-09.
    window = parse_maintenance("22:00-23:00 America/New_York")

    assert window.contains(utc("2025-03-09T03:30:00"))  # 22:30 EST on Mar 8
    assert window.contains(utc("2025-03-10T02:30:00"))  # 22:30 EDT on Mar 9
    assert not window.contains(utc("2025-03-10T03:30:00"))  # 23:30 EDT


def test_window_follows_fall_back() -> None:
    # New York moves from EDT (UTC-4) back to EST (UTC-5) on 2025-11-02.
    window = parse_maintenance("22:00-23:00 America/New_York")

    assert window.contains(utc("2025-11-02T02:30:00"))  # 22:30 EDT on Nov 1
    assert window.contains(utc("2025-11-03T03:30:00"))  # 22:30 EST on Nov 2
    assert not window.contains(utc("2025-11-03T02:30:00"))  # 21:30 EST


def test_night_window_is_shorter_when_clocks_go_forward() -> None:
    window = parse_maintenance("23:00-03:00 America/New_York")

    start, end = window.occurrence(datetime(2025, 3, 8).date())

    assert start == utc("2025-03-09T04:00:00")
    assert end == utc("2025-03-09T07:00:00")


def test_night_window_is_longer_when_clocks_go_back() -> None:
    window = parse_maintenance("23:00-03:00 America/New_York")

    start, end = window.occurrence(datetime(2025, 11, 1).date())

    assert start == utc("2025-11-02T03:00:00")
    assert end == utc("2025-11-02T08:00:00")


def test_skipped_start_begins_when_clocks_jump() -> None:
    # 02:30 does not exist on 2025-03-09 in New York: clocks jump 02:00 -> 03:00.
    window = parse_maintenance("02:30-03:30 America/New_York")

    start, end = window.occurrence(datetime(2025, 3, 9).date())

    assert start == utc("2025-03-09T07:00:00")
    assert end == utc("2025-03-09T07:30:00")


def test_repeated_start_counts_first_reading() -> None:
    # 01:30 happens twice on 2025-11-02 in New York: first EDT, then EST.
    window = parse_maintenance("01:30-02:30 America/New_York")

    start, end = window.occurrence(datetime(2025, 11, 2).date())

    assert start == utc("2025-11-02T05:30:00")
    assert end == utc("2025-11-02T07:30:00")
    assert window.contains(utc("2025-11-02T06:15:00"))  # 01:15 EST, in between


# --- Maintenance ---------------------------------------------------------------


def test_maintenance_uses_injected_clock() -> None:
    now = [utc("2025-03-10T02:30:00")]
    maintenance = Maintenance(
        parse_maintenance("22:00-23:00 America/New_York"), clock=lambda: now[0]
    )

    assert maintenance.active()
    now[0] = utc("2025-03-10T03:30:00")
    assert not maintenance.active()


def test_notice_names_window_in_display_zone() -> None:
    maintenance = Maintenance(parse_maintenance("22:00-23:00 America/New_York"))

    summer = maintenance.notice(NEW_YORK, utc("2025-07-01T02:30:00"))
    winter = maintenance.notice(NEW_YORK, utc("2025-01-15T03:30:00"))

    assert summer is not None and "22:00 EDT-23:00 EDT" in summer
    assert winter is not None and "22:00 EST-23:00 EST" in winter


def test_notice_is_none_outside_window() -> None:
    maintenance = Maintenance(parse_maintenance("22:00-23:00 UTC"))

    assert maintenance.notice(UTC, utc("2025-07-01T12:00:00")) is None


def test_epm_maintenance_page_counts_as_maintenance() -> None:
    pods_in_maintenance = [False]
    maintenance = Maintenance(None, epm_maintenance=lambda: pods_in_maintenance[0])
    noon = utc("2025-07-01T12:00:00")

    assert not maintenance.active(noon)
    pods_in_maintenance[0] = True
    assert maintenance.active(noon)
    notice = maintenance.notice(UTC, noon)
    assert notice is not None and "maintenance page" in notice


# --- end to end ----------------------------------------------------------------


def window_around_now() -> str:
    now = datetime.now(UTC)
    start = now - timedelta(hours=1)
    end = now + timedelta(hours=1)
    return f"{start:%H:%M}-{end:%H:%M} UTC"


def read_alerts(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "alerts.log"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def wait_until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def test_server_holds_stuck_alert_during_window(tmp_path: Path) -> None:
    apps = tmp_path / "apps.json"
    apps.write_text(
        json.dumps(
            {
                "apps": [
                    {"name": "Planning", "domains": [{"name": "Actual"}]},
                    {
                        "name": "FCCS",
                        "domains": [{"name": "Consol", "max_runtime": "1s"}],
                    },
                ]
            }
        )
    )
    data_dir = tmp_path / "data"
    env = {
        "EPMPULSE_APPS_CONFIG": str(apps),
        "EPMPULSE_MAINTENANCE": window_around_now(),
        "EPMPULSE_ALERT_BUNDLE_SECONDS": "0.2",
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.2",
    }
    canvas = data_dir / "canvas" / "main.md"
    with ServerProcess(data_dir, env) as server:
        loading = {"app": "FCCS", "domain": "Consol", "status": "Loading"}
        assert server.post(loading).status_code == 200
        failed = {"app": "Planning", "domain": "Actual", "status": "Error"}
        assert server.post(failed).status_code == 200

        wait_until(lambda: canvas.exists() and "Stuck" in canvas.read_text())
        wait_until(lambda: read_alerts(data_dir))
        # The stuck checker runs every second: give it two rounds to misbehave.
        time.sleep(2.5)
        markdown = canvas.read_text()
        alerts = read_alerts(data_dir)

    assert "EPM maintenance" in markdown
    assert "(the daily window)" in markdown
    assert "stuck-job alerts wait" in markdown
    assert len(alerts) == 1
    assert "Planning" in alerts[0]["text"]
    assert "FCCS" not in alerts[0]["text"]
