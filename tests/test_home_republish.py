"""Open Home tabs follow changes that the store does not announce: a reload and
the start of EPM maintenance (the daily window, or the pods' maintenance page)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from store.maintenance import parse_maintenance
from tests.conftest import write_apps
from tests.fakes.epm_pod import FakeEpmPod
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import USER_ID
from tests.slack_service import post_status, running_service
from tests.test_slack_home import open_home, view_text


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def home_text(slack: FakeSlack) -> str:
    views = slack.published_views(USER_ID)
    return view_text(views[-1]) if views else ""


async def test_reload_republishes_open_home(slack: FakeSlack, tmp_path: Path) -> None:
    apps = write_apps(
        tmp_path / "apps.json", [{"name": "Planning", "domains": ["Actual"]}]
    )
    async with running_service(slack, tmp_path / "data", apps_config=apps) as service:
        await open_home(slack)
        write_apps(
            apps,
            [
                {"name": "Planning", "domains": ["Actual"]},
                {"name": "FCCS", "domains": ["Consol"]},
            ],
        )

        service.reload()

        await slack.wait_for(lambda: "*FCCS*" in home_text(slack))


async def test_daily_maintenance_window_republishes_open_home(
    slack: FakeSlack, tmp_path: Path
) -> None:
    async with running_service(slack, tmp_path / "data") as service:
        await open_home(slack)
        assert "EPM maintenance" not in home_text(slack)
        assert service.alerting is not None
        now = datetime.now(UTC)
        window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"

        # As if the clock had entered the window: the stuck checker, which runs
        # every second, notices the change.
        service.alerting.maintenance.window = parse_maintenance(f"{window} UTC")

        await slack.wait_for(lambda: "(the daily window)" in home_text(slack))


async def test_epm_maintenance_page_republishes_open_home(
    slack: FakeSlack, tmp_path: Path
) -> None:
    async with FakeEpmPod() as pod:
        pod.add_job(
            "planning",
            401,
            [(-1, "Processing"), (0, "Completed")],
            advance_on_poll=False,
        )
        epm = {"url": pod.url, "product": "planning", "application": "Vision"}
        apps = write_apps(
            tmp_path / "apps.json",
            [{"name": "Planning", "domains": ["Actual"], "epm": epm}],
        )
        async with running_service(
            slack,
            tmp_path / "data",
            apps_config=apps,
            epm_username=pod.username,
            epm_password=pod.password,
            epm_poll_seconds=0.2,
            epm_maintenance_retry_seconds=0.2,
        ) as service:
            await open_home(slack)
            await post_status(
                service, app="Planning", domain="Actual", status="Loading", job_id="401"
            )
            await slack.wait_for(lambda: "Loading" in home_text(slack))
            assert "EPM maintenance" not in home_text(slack)

            pod.maintenance = True

            await slack.wait_for(lambda: "EPM maintenance" in home_text(slack))
            assert service.pull is not None
            assert service.pull.maintenance is True
