"""The real ``epmpulse serve`` against the fake Slack Web API: the demo close ends
on the canvas, and bursts of updates are coalesced into few edits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import ARCS_CHANNEL_ID, MAIN_CHANNEL_ID
from tests.server_process import ServerProcess

DEBOUNCE = 0.5


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.in_thread() as fake:
        yield fake


def slack_env(slack: FakeSlack, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.base_url,
        "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
        "SLACK_ARCS_CHANNEL_ID": ARCS_CHANNEL_ID,
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": str(DEBOUNCE),
        "EPMPULSE_RATE_LIMIT_POST": "100000 per minute",
        **extra,
    }


def demo_steps() -> list[dict[str, str]]:
    text = resources.files("bot").joinpath("data/demo_close.json").read_text()
    steps: list[dict[str, str]] = json.loads(text)["steps"]
    return steps


def final_states(steps: list[dict[str, str]]) -> dict[tuple[str, str], str]:
    from store.models import parse_status

    final: dict[tuple[str, str], str] = {}
    for step in steps:
        status = parse_status(step["status"])
        assert status is not None
        final[(step["app"], step["domain"])] = status.value
    return final


def test_demo_close_ends_on_the_canvases(slack: FakeSlack, tmp_path: Path) -> None:
    steps = demo_steps()
    with ServerProcess(tmp_path / "data", slack_env(slack)) as server:
        for step in steps:
            body = {k: v for k, v in step.items() if k != "delay"}
            response = server.post(body)
            assert response.status_code == 200, response.text

        main_id = slack.wait_for_sync(lambda: slack.channel_canvas(MAIN_CHANNEL_ID))
        arcs_id = slack.wait_for_sync(lambda: slack.channel_canvas(ARCS_CHANNEL_ID))
        expected = final_states(steps)

        def boards_final() -> bool:
            main = slack.canvas_markdown(main_id)
            arcs = slack.canvas_markdown(arcs_id)
            return all(
                _row_shows(arcs if app == "ARCS" else main, domain, status)
                for (app, domain), status in expected.items()
            )

        slack.wait_for_sync(boards_final, timeout=DEBOUNCE * 4 + 5)
        main = slack.canvas_markdown(main_id)
        arcs = slack.canvas_markdown(arcs_id)

    assert not main.startswith("# ")
    assert "## FCCS" in main
    assert "## Planning" in main
    assert "## ARCS" not in main
    assert "## ARCS" in arcs
    assert "UTC" in main
    for edit in slack.calls_to("canvases.edit"):
        changes = edit.params["changes"]
        assert len(changes) == 1
        assert changes[0]["operation"] == "replace"
    persisted = json.loads((tmp_path / "data" / "epmpulse.json").read_text())
    stored_ids = {
        doc["value"]
        for doc in persisted["meta"].values()
        if isinstance(doc["value"], str)
    }
    assert {main_id, arcs_id} <= stored_ids


def _row_shows(markdown: str, domain: str, status: str) -> bool:
    for line in markdown.splitlines():
        if line.startswith(f"| {domain} |"):
            return f" {status} |" in line
    return False


def test_burst_coalesces_canvas_edits(slack: FakeSlack, tmp_path: Path) -> None:
    burst_seconds = 3.0
    with ServerProcess(tmp_path / "data", slack_env(slack)) as server:
        server.post({"app": "Planning", "domain": "Actual", "status": "OK"})
        canvas_id = slack.wait_for_sync(lambda: slack.channel_canvas(MAIN_CHANNEL_ID))
        slack.wait_for_sync(lambda: "Actual" in slack.canvas_markdown(canvas_id))
        edits_before = len(slack.calls_to("canvases.edit"))

        started = time.monotonic()
        sequence = 0
        while time.monotonic() - started < burst_seconds:
            sequence += 1
            response = server.post(
                {
                    "app": "Planning",
                    "domain": f"D{sequence % 10}",
                    "status": "Loading",
                    "job_id": str(sequence),
                }
            )
            assert response.status_code == 200
        last_domain = f"D{sequence % 10}"
        slack.wait_for_sync(
            lambda: (
                f"| {last_domain} | :hourglass_flowing_sand: Loading | "
                in slack.canvas_markdown(canvas_id)
                and f"| {sequence} |" in slack.canvas_markdown(canvas_id)
            ),
            timeout=DEBOUNCE + 3,
        )
        edits = len(slack.calls_to("canvases.edit")) - edits_before

    assert sequence > 50
    # One edit per window during the burst, plus the one that publishes the end.
    assert edits <= burst_seconds / DEBOUNCE + 2


def test_slack_errors_are_retried_until_the_canvas_converges(
    slack: FakeSlack, tmp_path: Path
) -> None:
    with ServerProcess(tmp_path / "data", slack_env(slack)) as server:
        server.post({"app": "FCCS", "domain": "Actual", "status": "Loading"})
        canvas_id = slack.wait_for_sync(lambda: slack.channel_canvas(MAIN_CHANNEL_ID))
        slack.wait_for_sync(lambda: "Loading" in slack.canvas_markdown(canvas_id))
        slack.fail("canvases.edit", "canvas_editing_locked", times=2)
        slack.ratelimit("canvases.edit", retry_after=1, times=3)
        server.post({"app": "FCCS", "domain": "Actual", "status": "failed"})
        slack.wait_for_sync(
            lambda: ":x: Error" in slack.canvas_markdown(canvas_id), timeout=15
        )
        assert server.get("/health").status_code == 200
        metrics = server.get("/metrics").text
    assert "epmpulse_alert_queue_depth" in metrics
    assert 'epmpulse_canvas_publishes_total{board="main",result="error"}' in metrics
    assert 'epmpulse_slack_api_calls_total{method="canvases.edit"' in metrics
    failed = [c for c in slack.calls_to("canvases.edit") if not c.ok]
    assert len(failed) >= 5
