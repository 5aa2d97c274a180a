"""Pull mode end to end: the real server follows jobs in the fake EPM pod."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.epm_pod import FakeEpmPod
from tests.server_process import ServerProcess


@pytest.fixture
def pod() -> Iterator[FakeEpmPod]:
    with FakeEpmPod.in_thread() as fake:
        yield fake


def write_apps(tmp_path: Path, pod: FakeEpmPod) -> Path:
    apps = {
        "apps": [
            {
                "name": "Planning",
                "domains": [
                    "Actual",
                    "Forecast",
                    {"name": "DataLoad", "product": "data_integration"},
                ],
                "epm": {"url": pod.url, "product": "planning", "application": "Vision"},
            },
            {
                "name": "ARCS",
                "domains": ["Balances"],
                "epm": {"url": pod.url, "product": "arcs", "application": "ARCS"},
            },
            {"name": "Manual", "domains": ["Upload"]},
        ]
    }
    path = tmp_path / "apps.json"
    path.write_text(json.dumps(apps))
    return path


def basic_env(tmp_path: Path, pod: FakeEpmPod) -> dict[str, str]:
    return {
        "EPMPULSE_APPS_CONFIG": str(write_apps(tmp_path, pod)),
        "EPM_USERNAME": pod.username,
        "EPM_PASSWORD": pod.password,
        "EPM_POLL_SECONDS": "1",
    }


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


def row(server: ServerProcess, app: str, domain: str) -> dict[str, Any]:
    """The stored row, or an empty dict while it does not exist yet."""
    body = server.get(f"/api/v1/status/{app}").json()
    record: dict[str, Any] = body.get("domains", {}).get(domain, {})
    return record


def test_pushed_job_completes_without_post(pod: FakeEpmPod, tmp_path: Path) -> None:
    pod.add_job(
        "planning",
        101,
        [(-1, "Processing"), (-1, "Processing"), (0, "Completed", "Rule finished")],
    )
    with ServerProcess(tmp_path / "data", basic_env(tmp_path, pod)) as server:
        response = server.post(
            {
                "app": "Planning",
                "domain": "Actual",
                "status": "Loading",
                "job_id": "101",
            }
        )
        assert response.status_code == 200
        wait_until(lambda: row(server, "Planning", "Actual")["status"] == "OK")
        record = row(server, "Planning", "Actual")
        log = server.log()
        metrics = server.get("/metrics").text
    assert record["source"] == "epm"
    assert 'epmpulse_epm_api_calls_total{result="200"}' in metrics
    assert "epmpulse_epm_api_seconds_count" in metrics
    assert record["job_id"] == "101"
    assert "Rule finished" in record["message"]
    assert pod.password not in log


def test_each_product_maps_through_the_server(pod: FakeEpmPod, tmp_path: Path) -> None:
    pod.add_job("planning", 201, [(1, "Error", "Invalid member")])
    pod.add_job("data_integration", 202, [("WARNING", 0, "3 rows rejected")])
    pod.add_job("arcs", 203, [(0, "Unsuccessfully copied : 1")])
    with ServerProcess(tmp_path / "data", basic_env(tmp_path, pod)) as server:
        for app, domain, job in (
            ("Planning", "Forecast", "201"),
            ("Planning", "DataLoad", "202"),
            ("ARCS", "Balances", "203"),
        ):
            response = server.post(
                {"app": app, "domain": domain, "status": "running", "job_id": job}
            )
            assert response.status_code == 200
        wait_until(lambda: row(server, "ARCS", "Balances")["status"] != "Loading")
        wait_until(lambda: row(server, "Planning", "DataLoad")["status"] != "Loading")
        wait_until(lambda: row(server, "Planning", "Forecast")["status"] != "Loading")
        forecast = row(server, "Planning", "Forecast")
        dataload = row(server, "Planning", "DataLoad")
        balances = row(server, "ARCS", "Balances")
    assert forecast["status"] == "Error"
    assert dataload["status"] == "Warning"
    assert balances["status"] == "Warning"
    assert any(r.path.startswith("/aif/rest/V1/jobs/202") for r in pod.requests)
    assert any(r.path.startswith("/armARCS/rest/v1/jobs/203") for r in pod.requests)


def test_watch_endpoint_follows_and_validates(pod: FakeEpmPod, tmp_path: Path) -> None:
    pod.add_job("planning", 301, [(-1, "Processing"), (0, "Completed")])
    with ServerProcess(tmp_path / "data", basic_env(tmp_path, pod)) as server:
        ok = server.post(
            {"app": "planning", "domain": "actual", "job_id": 301}, path="/api/v1/watch"
        )
        not_numeric = server.post(
            {"app": "Planning", "domain": "Actual", "job_id": "abc"},
            path="/api/v1/watch",
        )
        no_epm = server.post(
            {"app": "Manual", "domain": "Upload", "job_id": "5"}, path="/api/v1/watch"
        )
        wait_until(
            lambda: (
                server.get("/api/v1/status")
                .json()["apps"]
                .get("Planning", {})
                .get("Actual", {})
                .get("status")
                == "OK"
            )
        )
    assert ok.status_code == 200
    assert ok.json()["watching"]["app"] == "Planning"
    assert not_numeric.status_code == 422
    assert not_numeric.json()["error"]["field"] == "job_id"
    assert no_epm.status_code == 422
    assert "epm block" in no_epm.json()["error"]["message"]


def test_maintenance_is_never_an_error(pod: FakeEpmPod, tmp_path: Path) -> None:
    pod.add_job(
        "planning", 401, [(-1, "Processing"), (0, "Completed")], advance_on_poll=False
    )
    data_dir = tmp_path / "data"
    env = {
        **basic_env(tmp_path, pod),
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.2",
        "EPM_MAINTENANCE_RETRY_SECONDS": "1",
    }
    with ServerProcess(data_dir, env) as server:
        pod.maintenance = True
        server.post(
            {
                "app": "Planning",
                "domain": "Actual",
                "status": "Loading",
                "job_id": "401",
            }
        )
        canvas = data_dir / "canvas" / "main.md"
        wait_until(lambda: canvas.exists() and "EPM maintenance" in canvas.read_text())
        assert row(server, "Planning", "Actual")["status"] == "Loading"
        pod.maintenance = False
        pod.advance("planning", 401)
        wait_until(lambda: row(server, "Planning", "Actual")["status"] == "OK")
        wait_until(lambda: "EPM maintenance" not in canvas.read_text())


def test_refresh_token_rotation_survives_a_restart(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    first = pod.issue_refresh_token()
    env = {
        "EPMPULSE_APPS_CONFIG": str(write_apps(tmp_path, pod)),
        "EPM_TOKEN_URL": pod.token_url,
        "EPM_CLIENT_ID": pod.client_id,
        "EPM_SCOPE": "urn:opc:serviceInstanceID=1urn:opc:resource:consumer::all",
        "EPM_REFRESH_TOKEN": first,
        "EPM_POLL_SECONDS": "1",
    }
    data_dir = tmp_path / "data"
    pod.add_job("planning", 501, [(-1, "Processing"), (0, "Completed")])
    with ServerProcess(data_dir, env) as server:
        server.post(
            {
                "app": "Planning",
                "domain": "Actual",
                "status": "Loading",
                "job_id": "501",
            }
        )
        wait_until(lambda: row(server, "Planning", "Actual")["status"] == "OK")
    assert first not in pod.live_refresh_tokens()
    stored = (data_dir / "secrets" / "epm_tokens.json").read_text()
    assert first not in stored

    pod.add_job("planning", 502, [(-1, "Processing"), (0, "Completed")])
    pod.expire_access_tokens()
    with ServerProcess(data_dir, env) as server:
        server.post(
            {
                "app": "Planning",
                "domain": "Forecast",
                "status": "Loading",
                "job_id": "502",
            }
        )
        wait_until(lambda: row(server, "Planning", "Forecast")["status"] == "OK")
        log = server.log()
    assert "invalid_grant" not in log
    assert first not in log


def test_client_credentials_work_when_the_pod_accepts_them(
    tmp_path: Path,
) -> None:
    with FakeEpmPod.in_thread(
        client_secret="cc-secret-value", accept_client_credentials=True
    ) as pod:
        pod.add_job("planning", 601, [(-1, "Processing"), (0, "Completed")])
        env = {
            "EPMPULSE_APPS_CONFIG": str(write_apps(tmp_path, pod)),
            "EPM_TOKEN_URL": pod.token_url,
            "EPM_CLIENT_ID": pod.client_id,
            "EPM_CLIENT_SECRET": "cc-secret-value",
            "EPM_SCOPE": "urn:opc:serviceInstanceID=1urn:opc:resource:consumer::all",
            "EPM_POLL_SECONDS": "1",
        }
        with ServerProcess(tmp_path / "data", env) as server:
            server.post(
                {
                    "app": "Planning",
                    "domain": "Actual",
                    "status": "Loading",
                    "job_id": "601",
                }
            )
            wait_until(lambda: row(server, "Planning", "Actual")["status"] == "OK")
            log = server.log()
        assert pod.token_requests("client_credentials")
    assert "cc-secret-value" not in log


def test_watch_subcommand_follows_a_job_through_socket_mode(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    from tests.fakes.slack_api import FakeSlack
    from tests.fakes.slack_payloads import MAIN_CHANNEL_ID, slash_command

    pod.add_job("planning", 701, [(-1, "Processing"), (0, "Completed", "Done")])
    with FakeSlack.in_thread() as slack:
        env = {
            **basic_env(tmp_path, pod),
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_API_URL": slack.base_url,
            "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
        }
        with ServerProcess(tmp_path / "data", env) as server:
            slack.socket_mode.wait_connected_sync(timeout=15)
            payload = slash_command(
                "watch planning actual 701", response_url=slack.response_url("w")
            )
            ack = slack.socket_mode.send_envelope_sync("slash_commands", payload)
            replies = slack.wait_for_sync(lambda: slack.responses("w"), timeout=10)
            wait_until(lambda: row(server, "Planning", "Actual").get("status") == "OK")
            record = row(server, "Planning", "Actual")

    assert ack.latency < 3.0
    assert "701" in json.dumps(replies[0])
    assert record["job_id"] == "701"
    assert record["source"] == "epm"
