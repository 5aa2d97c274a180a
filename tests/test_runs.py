"""Job runs end to end: run times and durations through the real server, on the
canvas, and the history API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("runs") / "data"
    env = {"EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.2"}
    with ServerProcess(data_dir, env) as process:
        yield process


# One base time for the whole module, so that differences are exact. Only
# differences between these times are checked, never their distance from now.
BASE = datetime.now(UTC).replace(microsecond=0)


def ago(seconds: float) -> str:
    return (BASE - timedelta(seconds=seconds)).isoformat()


def send(
    server: ServerProcess, app: str, domain: str, value: str, **extra: Any
) -> None:
    body = {"app": app, "domain": domain, "status": value, **extra}
    response = server.post(body)
    assert response.status_code == 200, response.text


def record(server: ServerProcess, app: str, domain: str) -> dict[str, Any]:
    body = server.get(f"/api/v1/status/{app}").json()
    row: dict[str, Any] = body["domains"][domain]
    return row


def canvas_row(server: ServerProcess, domain: str, expected: str) -> str:
    """Wait until the main canvas file has a row for ``domain`` containing
    ``expected`` and return that row."""
    path = server.data_dir / "canvas" / "main.md"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(f"| {domain} |") and expected in line:
                    return line
        time.sleep(0.05)
    raise AssertionError(f"no canvas row for {domain} with {expected!r}")


def test_job_run_has_start_finish_and_duration(server: ServerProcess) -> None:
    started, finished = ago(150), ago(60)
    send(server, "Runs", "Job", "Loading", job_id="77", timestamp=started)
    send(server, "Runs", "Job", "OK", job_id="77", timestamp=finished)

    row = record(server, "Runs", "Job")

    assert datetime.fromisoformat(row["run_started_at"]) == datetime.fromisoformat(
        started
    )
    assert datetime.fromisoformat(row["run_finished_at"]) == datetime.fromisoformat(
        finished
    )
    assert row["run_duration_seconds"] == pytest.approx(90, abs=0.01)


def test_canvas_shows_last_run_duration(server: ServerProcess) -> None:
    send(server, "Runs", "Took", "Loading", job_id="78", timestamp=ago(400))
    send(server, "Runs", "Took", "OK", job_id="78", timestamp=ago(100))

    assert "took 5m" in canvas_row(server, "Took", "took")


def test_canvas_shows_how_long_job_is_running(server: ServerProcess) -> None:
    started = datetime.now(UTC) - timedelta(seconds=185)
    send(
        server, "Runs", "Running", "Loading", job_id="79", timestamp=started.isoformat()
    )

    assert "running for 3m" in canvas_row(server, "Running", "running for")


def test_new_job_id_starts_new_run(server: ServerProcess) -> None:
    send(server, "Runs", "Rerun", "Error", job_id="80", timestamp=ago(300))
    second = ago(200)
    send(server, "Runs", "Rerun", "Loading", job_id="81", timestamp=second)

    row = record(server, "Runs", "Rerun")

    assert datetime.fromisoformat(row["run_started_at"]) == datetime.fromisoformat(
        second
    )
    assert row["run_finished_at"] is None
    assert row["run_duration_seconds"] is None


def test_job_that_only_failed_has_no_duration(server: ServerProcess) -> None:
    send(server, "Runs", "OnlyError", "Error", job_id="55", timestamp=ago(50))

    row = record(server, "Runs", "OnlyError")
    line = canvas_row(server, "OnlyError", ":x:")

    assert row["run_duration_seconds"] is None
    assert "took" not in line


def test_run_without_job_id_lasts_until_ok(server: ServerProcess) -> None:
    first = ago(600)
    send(server, "Runs", "NoJob", "Error", timestamp=first)
    send(server, "Runs", "NoJob", "Loading", timestamp=ago(500))
    send(server, "Runs", "NoJob", "OK", timestamp=ago(300))

    row = record(server, "Runs", "NoJob")

    assert datetime.fromisoformat(row["run_first_seen_at"]) == datetime.fromisoformat(
        first
    )
    assert row["run_duration_seconds"] == pytest.approx(300, abs=0.01)


def test_job_run_records_first_seen_and_first_loading(server: ServerProcess) -> None:
    queued = ago(400)
    loading = ago(300)
    send(server, "Runs", "Queued", "Blank", job_id="95", timestamp=queued)
    send(server, "Runs", "Queued", "Loading", job_id="95", timestamp=loading)
    send(server, "Runs", "Queued", "OK", job_id="95", timestamp=ago(100))

    row = record(server, "Runs", "Queued")

    assert datetime.fromisoformat(row["run_first_seen_at"]) == datetime.fromisoformat(
        queued
    )
    assert datetime.fromisoformat(row["run_started_at"]) == datetime.fromisoformat(
        loading
    )
    assert row["run_duration_seconds"] == pytest.approx(200, abs=0.01)


def test_history_lists_row_events_newest_first(server: ServerProcess) -> None:
    for value in ("Loading", "Warning", "OK"):
        send(server, "Hist", "Actual", value, job_id="90")
    send(server, "Hist", "Other", "Error")

    body = server.get("/api/v1/history?app=Hist&domain=Actual&limit=2").json()

    assert [event["status"] for event in body["events"]] == ["OK", "Warning"]
    assert {event["domain"] for event in body["events"]} == {"Actual"}


def test_history_needs_api_key(server: ServerProcess) -> None:
    response = requests.get(server.url + "/api/v1/history?app=Hist", timeout=5)

    assert response.status_code == 401


def test_history_rejects_invalid_limit(server: ServerProcess) -> None:
    response = server.get("/api/v1/history?limit=0")

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "limit"


def test_history_is_kept_across_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as first:
        send(first, "Restart", "Actual", "Error", job_id="1")
    with ServerProcess(data_dir) as second:
        body = second.get("/api/v1/history?app=Restart").json()

    assert [event["job_id"] for event in body["events"]] == ["1"]
