"""No configured secret appears in the logs or the data files of a full run.

The run is in Socket Mode against the fake Slack, at DEBUG level, where slack_sdk
logs request headers. API keys come from the environment and from a keys file. The
run goes through the paths that log: accepted and rejected requests, a secret sent
as the key and in a URL, Slack faults and retries, an alert, a reload and a stop.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID
from tests.server_process import ServerProcess

ENV_KEYS = [f"env-key-{secrets.token_hex(16)}", f"env-key-{secrets.token_hex(16)}"]
FILE_KEY = f"file-key-{secrets.token_hex(16)}"
RELOADED_KEY = f"reloaded-key-{secrets.token_hex(16)}"
BOT_TOKEN = f"xoxb-{secrets.token_hex(8)}-{secrets.token_hex(12)}"
APP_TOKEN = f"xapp-1-{secrets.token_hex(8)}-{secrets.token_hex(12)}"
SIGNING_SECRET = secrets.token_hex(16)
ALL_SECRETS = {
    "EPMPULSE_API_KEY 1": ENV_KEYS[0],
    "EPMPULSE_API_KEY 2": ENV_KEYS[1],
    "keys file key": FILE_KEY,
    "key added by a reload": RELOADED_KEY,
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_APP_TOKEN": APP_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
}


@pytest.fixture(scope="module")
def full_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, str, FakeSlack]]:
    """Run the server through every logging path; yield the data dir, every log
    line it wrote, and the fake Slack."""
    root = tmp_path_factory.mktemp("secrets")
    keys = root / "api_keys"
    keys.write_text(f"pod-a:{FILE_KEY}\n")
    log_file = root / "logs" / "epmpulse.log"
    with FakeSlack.in_thread(bot_tokens=[BOT_TOKEN], app_token=APP_TOKEN) as slack:
        env = {
            "EPMPULSE_API_KEY": ",".join(ENV_KEYS),
            "EPMPULSE_API_KEYS_FILE": str(keys),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
            "EPMPULSE_LOG_LEVEL": "DEBUG",
            "EPMPULSE_LOG_FORMAT": "json",
            "EPMPULSE_LOG_FILE": str(log_file),
            "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.2",
            "EPMPULSE_ALERT_BUNDLE_SECONDS": "0.2",
        }
        server = ServerProcess(root / "data", env).start()
        try:
            _exercise(server, slack, keys)
        finally:
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            code = server.process.wait(timeout=30)
        assert code == 0, server.log()[-2000:]
        yield root / "data", server.log() + log_file.read_text(), slack


def _exercise(server: ServerProcess, slack: FakeSlack, keys: Path) -> None:
    url = server.url

    def send(key: str | None, path: str = "/api/v1/status", **body: str) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        if not body:
            return requests.get(url + path, headers=headers, timeout=10).status_code
        return requests.post(
            url + path, json=body, headers=headers, timeout=10
        ).status_code

    row = {"app": "Planning", "domain": "Actual"}
    assert send(ENV_KEYS[0], status="Loading", **row) == 200
    assert send(ENV_KEYS[1], status="OK", **row) == 200
    assert send(FILE_KEY, status="Loading", **row) == 200
    for wrong in (None, "not-a-key", BOT_TOKEN, SIGNING_SECRET, APP_TOKEN):
        assert send(wrong, status="OK", **row) == 401
    for secret in (ENV_KEYS[0], FILE_KEY, BOT_TOKEN):
        send(ENV_KEYS[0], f"/api/v1/status/{secret}")
        send(ENV_KEYS[0], f"/api/v1/history?app={secret}")
        send(ENV_KEYS[0], f"/api/v1/{secret}")
    slack.server_error("canvases.edit", times=3)
    slack.ratelimit("canvases.edit", retry_after=1)
    assert send(ENV_KEYS[0], status="failed", message="load failed", **row) == 200
    slack.wait_for_sync(lambda: slack.calls_to("chat.postMessage"), timeout=10)
    canvas = slack.wait_for_sync(lambda: slack.channel_canvas(MAIN_CHANNEL_ID), 10)
    slack.wait_for_sync(lambda: "Error" in slack.canvas_markdown(canvas), timeout=15)

    keys.write_text(f"pod-a:{FILE_KEY}\npod-b:{RELOADED_KEY}\n")
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "reloaded:" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert send(RELOADED_KEY, status="OK", **row) == 200
    send(RELOADED_KEY, f"/api/v1/status/{RELOADED_KEY}")
    assert send(None, "/health") == 200
    assert send(None, "/metrics") == 200


@pytest.mark.parametrize("name", sorted(ALL_SECRETS))
def test_secret_not_in_logs(full_run: tuple[Path, str, FakeSlack], name: str) -> None:
    _, logs, _ = full_run
    assert ALL_SECRETS[name] not in logs


def test_logs_cover_the_run(full_run: tuple[Path, str, FakeSlack]) -> None:
    _, logs, _ = full_run
    for expected in ("auth rejected", "key=pod-a", "key=env-1", "reloaded:", "stopped"):
        assert expected in logs
    assert "no apps.json, so every app and domain is accepted" in logs
    assert '"level": "DEBUG", "logger": "canvas.publisher"' in logs


@pytest.mark.parametrize("name", sorted(ALL_SECRETS))
def test_secret_not_in_data_files(
    full_run: tuple[Path, str, FakeSlack], name: str
) -> None:
    data_dir, _, _ = full_run
    files = [p for p in data_dir.rglob("*") if p.is_file() and "secrets" not in p.parts]
    assert files
    for path in files:
        assert ALL_SECRETS[name] not in path.read_text(errors="replace"), path


@pytest.mark.parametrize(
    "name", sorted(set(ALL_SECRETS) - {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"})
)
def test_secret_not_sent_to_slack(
    full_run: tuple[Path, str, FakeSlack], name: str
) -> None:
    _, _, slack = full_run
    sent = json.dumps(
        [call.params for call in slack.calls] + [call.token for call in slack.calls]
    )
    assert ALL_SECRETS[name] not in sent
