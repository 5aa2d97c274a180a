"""Stuck jobs: the checker with an injected clock, and the real server raising one
alert a few seconds after a per-domain max runtime."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from alerts.stuck import StuckChecker
from store.catalog import AppConfig, Catalog, DomainConfig
from store.maintenance import Maintenance, parse_maintenance
from store.models import Record, Snapshot, Status
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID
from tests.server_process import ServerProcess

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def loading(app: str, domain: str, since: datetime = T0) -> Record:
    return Record(
        app=app,
        domain=domain,
        status=Status.LOADING,
        timestamp=since,
        received_at=since,
        since=since,
        job_id="7",
        run_started_at=since,
    )


class Recorder:
    def __init__(self) -> None:
        self.stuck: list[tuple[str, float]] = []
        self.rows: list[str] = []
        self.maintenance_changes = 0

    def on_stuck(self, record: Record, limit: float) -> None:
        self.stuck.append((record.domain, limit))

    def on_row_change(self, app: str) -> None:
        self.rows.append(app)

    def on_maintenance_change(self) -> None:
        self.maintenance_changes += 1


def checker_for(
    records: list[Record],
    recorder: Recorder,
    maintenance: Maintenance | None = None,
    catalog: Catalog | None = None,
) -> StuckChecker:
    rows = MappingProxyType({(r.app, r.domain): r for r in records})
    catalog = catalog or Catalog()

    def max_runtime(app: str, domain: str) -> float:
        return catalog.max_runtime(app, domain) or 60.0

    return StuckChecker(
        lambda: Snapshot(rows),
        max_runtime,
        maintenance or Maintenance(None),
        on_stuck=recorder.on_stuck,
        on_row_change=recorder.on_row_change,
        on_maintenance_change=recorder.on_maintenance_change,
    )


def test_row_is_not_stuck_before_limit() -> None:
    recorder = Recorder()
    checker = checker_for([loading("Planning", "Actual")], recorder)

    checker.check(T0 + timedelta(seconds=59))

    assert recorder.stuck == []
    assert recorder.rows == []


def test_crossing_limit_rerenders_board_and_alerts() -> None:
    recorder = Recorder()
    checker = checker_for([loading("Planning", "Actual")], recorder)

    checker.check(T0 + timedelta(seconds=61))

    assert recorder.rows == ["Planning"]
    assert recorder.stuck == [("Actual", 60.0)]


def test_stuck_row_rerenders_board_once() -> None:
    recorder = Recorder()
    checker = checker_for([loading("Planning", "Actual")], recorder)

    checker.check(T0 + timedelta(seconds=61))
    checker.check(T0 + timedelta(seconds=62))

    assert recorder.rows == ["Planning"]


def test_domain_max_runtime_overrides_default() -> None:
    catalog = Catalog(
        [
            AppConfig(
                name="Planning",
                domains=(
                    DomainConfig.model_validate(
                        {"name": "Actual", "max_runtime": "5s"}
                    ),
                    DomainConfig(name="Budget"),
                ),
            )
        ]
    )
    recorder = Recorder()
    records = [loading("Planning", "Actual"), loading("Planning", "Budget")]
    checker = checker_for(records, recorder, catalog=catalog)

    checker.check(T0 + timedelta(seconds=6))

    assert recorder.stuck == [("Actual", 5.0)]


def test_stuck_alert_waits_for_maintenance_end() -> None:
    recorder = Recorder()
    window = parse_maintenance("12:00-13:00 UTC")
    checker = checker_for(
        [loading("Planning", "Actual")], recorder, Maintenance(window)
    )

    checker.check(T0 + timedelta(minutes=30))
    during = list(recorder.stuck)
    checker.check(T0 + timedelta(minutes=60))

    assert during == []
    assert recorder.rows == ["Planning"]
    assert recorder.stuck == [("Actual", 60.0)]


def test_maintenance_start_and_end_rerender_boards() -> None:
    recorder = Recorder()
    window = parse_maintenance("12:00-13:00 UTC")
    checker = checker_for([], recorder, Maintenance(window))

    checker.check(T0 - timedelta(minutes=1))
    checker.check(T0 + timedelta(minutes=1))
    checker.check(T0 + timedelta(minutes=2))
    checker.check(T0 + timedelta(minutes=61))

    assert recorder.maintenance_changes == 2


def test_epm_maintenance_page_holds_stuck_alert() -> None:
    recorder = Recorder()
    maintenance = Maintenance(None)
    maintenance.set_epm_maintenance(True)
    checker = checker_for([loading("Planning", "Actual")], recorder, maintenance)

    checker.check(T0 + timedelta(minutes=5))
    during = list(recorder.stuck)
    maintenance.set_epm_maintenance(False)
    checker.check(T0 + timedelta(minutes=6))

    assert during == []
    assert recorder.stuck == [("Actual", 60.0)]


# --- end to end ----------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.in_thread() as fake:
        yield fake


def test_server_alerts_stuck_job_after_max_runtime(
    slack: FakeSlack, tmp_path: Path
) -> None:
    apps = tmp_path / "apps.json"
    apps.write_text(
        json.dumps(
            {
                "apps": [
                    {
                        "name": "Planning",
                        "domains": [
                            {"name": "Actual", "max_runtime": "2s"},
                            {"name": "Budget"},
                        ],
                    }
                ]
            }
        )
    )
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.base_url,
        "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
        "EPMPULSE_APPS_CONFIG": str(apps),
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.3",
        "EPMPULSE_ALERT_BUNDLE_SECONDS": "0.2",
    }

    def stuck_alerts() -> list[Message]:
        messages = slack.messages(MAIN_CHANNEL_ID)
        return [m for m in messages if "EPM job stuck" in m.text]

    def planning_alerts() -> list[Message]:
        messages = slack.messages(MAIN_CHANNEL_ID)
        return [m for m in messages if "Planning ·" in m.text]

    with ServerProcess(tmp_path / "data", env) as server:
        canvas_id = slack.wait_for_sync(lambda: slack.channel_canvas(MAIN_CHANNEL_ID))
        for domain in ("Actual", "Budget"):
            body = {"app": "Planning", "domain": domain, "status": "Loading"}
            assert server.post(body).status_code == 200
        started = time.monotonic()
        slack.wait_for_sync(stuck_alerts, timeout=8)
        alerted_after = time.monotonic() - started
        slack.wait_for_sync(lambda: "Stuck" in slack.canvas_markdown(canvas_id))
        stuck_canvas = slack.canvas_markdown(canvas_id)

        ok = {"app": "Planning", "domain": "Actual", "status": "OK"}
        assert server.post(ok).status_code == 200
        slack.wait_for_sync(lambda: planning_alerts()[0].replies, timeout=5)
        slack.wait_for_sync(lambda: "Stuck" not in slack.canvas_markdown(canvas_id))
        time.sleep(1.2)
        alerts = planning_alerts()

    assert 2.0 <= alerted_after < 5.0
    assert len(alerts) == 1
    assert "Planning · Actual" in alerts[0].text
    assert "Budget" not in alerts[0].text
    assert alerts[0].text.startswith(":white_check_mark: Recovered")
    assert "running longer than 2s" in stuck_canvas
    assert stuck_canvas.count("Stuck") == 2  # the summary and the Actual row
    assert "recovered" in alerts[0].replies[0].text
