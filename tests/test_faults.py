"""The real server under faults: a full disk, SIGTERM under load, SIGHUP reloads,
a failing Slack, and the modes of the files it writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID
from tests.server_process import API_KEY, ServerProcess

T = TypeVar("T")
UNLIMITED = {
    "EPMPULSE_RATE_LIMIT_POST": "1000000 per minute",
    "EPMPULSE_RATE_LIMIT_GET": "1000000 per minute",
}
OLD_KEY = "old-key-0123456789abcdef0123"
NEW_KEY = "new-key-0123456789abcdef0123"


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def post(url: str, body: dict[str, Any], key: str = API_KEY) -> requests.Response:
    return requests.post(
        url + "/api/v1/status",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def stored_rows(path: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads(path.read_text()).get("rows", {}).values()
    return {row["domain"]: row for row in rows}


def row_status_on_disk(path: Path, status: str) -> bool:
    # The rows file trails the history by up to a second (a checkpoint).
    return path.exists() and stored_rows(path).get("Row", {}).get("status") == status


@dataclass
class Writer:
    """Posts to one row in a thread until stopped; records every outcome."""

    url: str
    row: str
    key: Callable[[], str] = lambda: API_KEY
    acked: int = 0
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (time the request was sent, status) of every request that got a response
    answered: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Writer:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        session = requests.Session()
        sequence = 0
        while not self.stop.is_set():
            sequence += 1
            body = {"app": "Load", "domain": self.row, "status": "Loading"}
            body["job_id"] = str(sequence)
            sent_at = time.monotonic()
            try:
                response = session.post(
                    self.url + "/api/v1/status",
                    json=body,
                    headers={"Authorization": f"Bearer {self.key()}"},
                    timeout=10,
                )
            except requests.RequestException as exc:
                self.errors.append(type(exc).__name__)
                time.sleep(0.01)
                continue
            self.statuses.append(response.status_code)
            self.answered.append((sent_at, response.status_code))
            if response.status_code == 200:
                self.acked = sequence

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=15)


# --- (a) disk full -------------------------------------------------------------------


def _tmpfs_prefix(data_dir: Path, size: str) -> list[str]:
    """Run the server in a private mount namespace with ``data_dir`` on a tmpfs."""
    script = f'mount -t tmpfs -o size={size},mode=0750 epmpulse-test "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]


def _require_private_tmpfs(probe_dir: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("disk-full test skipped: unshare (util-linux) is not installed")
    probe_dir.mkdir()
    probe = subprocess.run(
        [*_tmpfs_prefix(probe_dir, "64k"), str(probe_dir), "true"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if probe.returncode != 0:
        pytest.skip(
            "disk-full test skipped: this sandbox does not permit "
            f"'unshare --mount' with 'mount -t tmpfs' ({probe.stderr.strip()})"
        )


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no block left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (64 * 1024, 4096, 512, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == 28, exc  # ENOSPC
    finally:
        os.close(fd)


def test_disk_full_answers_503_and_recovers(tmp_path: Path) -> None:
    _require_private_tmpfs(tmp_path / "probe")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {**UNLIMITED, "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.1"}
    prefix = [*_tmpfs_prefix(data_dir, "1m"), str(data_dir)]
    with ServerProcess(data_dir, env, command_prefix=prefix) as server:
        assert server.process is not None
        # The tmpfs exists only in the server's mount namespace; this is its view.
        seen = Path(f"/proc/{server.process.pid}/root") / data_dir.relative_to("/")
        ok = post(server.url, {"app": "Disk", "domain": "Row", "status": "OK"})
        assert ok.status_code == 200
        assert not (data_dir / "epmpulse.json").exists(), "the tmpfs is not private"
        wait_until(
            lambda: row_status_on_disk(seen / "epmpulse.json", "OK"),
            5,
            "the rows file to hold the first update",
        )

        _fill(seen / "filler")
        # An update is stored once its history line is on disk, and the last
        # page of the history may still have room for a line or two. Long
        # messages fill it after the first update at most.
        answers = [
            post(
                server.url,
                {
                    "app": "Disk",
                    "domain": "Row",
                    "status": "Error",
                    "job_id": str(n),
                    "message": f"{n} " + "x" * 1900,
                },
            )
            for n in range(6)
        ]
        health = requests.get(server.url + "/health", timeout=5)
        rows_while_full = server.get("/api/v1/status").json()["apps"]["Disk"]
        on_disk_while_full = stored_rows(seen / "epmpulse.json")

        (seen / "filler").unlink()
        recovered = post(
            server.url,
            {"app": "Disk", "domain": "Row", "status": "Warning", "job_id": "after"},
        )
        health_after = requests.get(server.url + "/health", timeout=5)
        wait_until(
            lambda: row_status_on_disk(seen / "epmpulse.json", "Warning"),
            5,
            "the rows file to catch up after the disk was freed",
        )
        on_disk_after = stored_rows(seen / "epmpulse.json")
        canvas = wait_until(
            lambda: "after" in (seen / "canvas" / "main.md").read_text(),
            5,
            "the canvas to show the update made after the disk was freed",
        )
        history = server.get("/api/v1/history?app=Disk&limit=100").json()["events"]
        log = server.log()

    codes = [a.status_code for a in answers]
    acked = [str(n) for n, code in enumerate(codes) if code == 200]
    assert len(acked) <= 1, codes
    assert codes[len(acked) :] == [503] * (6 - len(acked))
    assert answers[-1].json()["error"]["code"] == "store_unavailable"
    assert "store write failed, 1 update(s) not stored" in log
    assert "No space left on device" in log
    assert health.status_code == 503
    assert health.json()["checks"]["store"].startswith("failing:")
    assert rows_while_full["Row"]["job_id"] == (acked[-1] if acked else None)
    assert on_disk_while_full["Row"]["status"] == "OK"
    # The history contains every acknowledged update and none that got a 503.
    assert [e["job_id"] for e in history if e["status"] == "Error"] == acked
    assert recovered.status_code == 200
    assert health_after.status_code == 200
    assert on_disk_after["Row"]["status"] == "Warning"
    assert canvas


# --- (b) SIGTERM under load ----------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.in_thread() as fake:
        yield fake


def slack_env(slack: FakeSlack, debounce: float) -> dict[str, str]:
    return {
        **UNLIMITED,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.base_url,
        "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": str(debounce),
    }


def canvas_row(markdown: str, domain: str) -> str:
    for line in markdown.splitlines():
        if line.startswith(f"| {domain} |"):
            return line
    return ""


def test_sigterm_under_load_loses_nothing(slack: FakeSlack, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, slack_env(slack, 0.3)).start()
    try:
        post(server.url, {"app": "Load", "domain": "Row0", "status": "OK"})
        canvas_id = wait_until(
            lambda: slack.channel_canvas(MAIN_CHANNEL_ID), 5, "the channel canvas"
        )
        # Each edit is in flight for a while, so SIGTERM lands during one.
        slack.set_edit_duration(0.5)
        writers = [Writer(server.url, f"Row{n}").start() for n in range(6)]
        time.sleep(1.5)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = server.process.wait(timeout=30)
    finally:
        server.kill()
    for writer in writers:
        writer.finish()

    assert code == 0
    late = [
        status
        for writer in writers
        for sent_at, status in writer.answered
        if sent_at > signalled + 0.2
    ]
    assert late == [], "requests sent after SIGTERM were still served"
    for writer in writers:
        assert writer.acked > 0, f"{writer.row} got no 200"
        assert set(writer.statuses) == {200}, f"{writer.row}: {writer.statuses}"
    rows = stored_rows(data_dir / "epmpulse.json")
    markdown = slack.canvas_markdown(canvas_id)
    for writer in writers:
        stored = int(rows[writer.row]["job_id"])
        assert stored >= writer.acked, f"{writer.row}: acked {writer.acked}"
        assert f"| {stored} |" in canvas_row(markdown, writer.row), writer.row
    log = server.log()
    assert "shutting down" in log
    assert log.rstrip().endswith("stopped"), log[-500:]


# --- (c) SIGHUP reloads --------------------------------------------------------------


def reload(server: ServerProcess, count: int, marker: str = "reloaded:") -> str:
    """Send SIGHUP and wait for the ``count``-th log line with ``marker``."""
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: server.log().count(marker) >= count, 5, f"{marker} #{count}")
    lines = [line for line in server.log().splitlines() if marker in line]
    return lines[count - 1]


def status_of(server: ServerProcess, key: str) -> int:
    body = {"app": "Keys", "domain": "Check", "status": "OK"}
    return post(server.url, body, key).status_code


def test_sighup_rotates_api_keys_without_dropping(tmp_path: Path) -> None:
    keys = tmp_path / "api_keys"
    keys.write_text(f"old:{OLD_KEY}\n")
    env = {**UNLIMITED, "EPMPULSE_API_KEY": "", "EPMPULSE_API_KEYS_FILE": str(keys)}
    client_key = [OLD_KEY]
    with ServerProcess(tmp_path / "data", env) as server:
        writer = Writer(server.url, "Rotating", key=lambda: client_key[0]).start()
        before = (status_of(server, OLD_KEY), status_of(server, NEW_KEY))

        keys.write_text(f"old:{OLD_KEY}\nnew:{NEW_KEY}\n")
        both_line = reload(server, 1)
        during = (status_of(server, OLD_KEY), status_of(server, NEW_KEY))

        client_key[0] = NEW_KEY
        time.sleep(0.2)
        keys.write_text(f"new:{NEW_KEY}\n")
        new_line = reload(server, 2)
        after = (status_of(server, OLD_KEY), status_of(server, NEW_KEY))

        keys.write_text("this line has no label\n")
        failed_line = reload(server, 1, "reload failed")
        broken = (status_of(server, OLD_KEY), status_of(server, NEW_KEY))
        time.sleep(0.2)
        writer.finish()

    assert before == (200, 401)
    assert "2 API key(s) (old, new)" in both_line
    assert during == (200, 200)
    assert "1 API key(s) (new)" in new_line
    assert after == (401, 200)
    assert "keeping the running configuration" in failed_line
    assert broken == (401, 200)
    assert len(writer.statuses) > 20
    assert set(writer.statuses) == {200}
    assert writer.errors == []


def test_sighup_reloads_apps_json(tmp_path: Path) -> None:
    apps = tmp_path / "apps.json"
    apps.write_text(json.dumps({"apps": [{"name": "Planning", "domains": ["Actual"]}]}))
    env = {**UNLIMITED, "EPMPULSE_APPS_CONFIG": str(apps)}
    fccs = {"app": "FCCS", "domain": "Consol", "status": "OK"}
    with ServerProcess(tmp_path / "data", env) as server:
        unknown = post(server.url, fccs)
        apps.write_text(
            json.dumps(
                {
                    "apps": [
                        {"name": "Planning", "domains": ["Actual"]},
                        {"name": "FCCS", "domains": ["Consol"]},
                    ]
                }
            )
        )
        reloaded = reload(server, 1)
        known = post(server.url, fccs)
        apps.write_text("{not json")
        failed = reload(server, 1, "reload failed")
        kept = post(server.url, fccs)
        apps.write_text(json.dumps({"apps": []}))
        emptied = reload(server, 2, "reload failed")
        still_kept = post(server.url, fccs)

    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_app"
    assert f"2 app(s) in {apps}" in reloaded
    assert known.status_code == 200
    assert "is not valid JSON" in failed
    assert kept.status_code == 200
    assert "apps is empty" in emptied
    assert still_kept.status_code == 200


# --- (d) Slack failing ---------------------------------------------------------------


def test_slack_failures_converge(slack: FakeSlack, tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", slack_env(slack, 0.2)) as server:
        post(server.url, {"app": "Load", "domain": "Row0", "status": "Loading"})
        canvas_id = wait_until(
            lambda: slack.channel_canvas(MAIN_CHANNEL_ID), 5, "the channel canvas"
        )

        def shows(status: str, domain: str = "Row0") -> bool:
            return f" {status} |" in canvas_row(
                slack.canvas_markdown(canvas_id), domain
            )

        wait_until(lambda: shows("Loading"), 5, "Loading on the canvas")
        # (name, fault, status posted after it, failed publishes it causes).
        # slack_sdk itself retries a 5xx and a dropped connection twice, so three
        # 500s make one failed publish and one dropped connection none.
        faults: list[tuple[str, Callable[[], None], str, int]] = [
            (
                "HTTP 500 with HTML",
                lambda: slack.server_error("canvases.edit", times=3),
                "Error",
                1,
            ),
            (
                "HTTP 200 with HTML",
                lambda: slack.server_error("canvases.edit", status=200, times=1),
                "OK",
                1,
            ),
            (
                "no answer",
                lambda: slack.drop_connection("canvases.edit", times=1),
                "Warning",
                0,
            ),
        ]
        answer_seconds = []
        for name, inject, status, expected_failures in faults:
            failures_before = server.log().count(" failed (attempt ")
            calls_before = len(slack.calls_to("canvases.edit"))
            inject()
            started = time.monotonic()
            reply = post(
                server.url, {"app": "Load", "domain": "Row0", "status": status}
            )
            answer_seconds.append(time.monotonic() - started)
            assert reply.status_code == 200, name
            wait_until(lambda s=status: shows(s), 10, f"{status} after {name}")
            failures = server.log().count(" failed (attempt ") - failures_before
            assert failures == expected_failures, f"{name}: {failures} failures"
            faulted = len(slack.calls_to("canvases.edit")) - calls_before
            assert faulted >= 2, f"{name}: the fault was not hit"

        slack.hang("canvases.edit", 1.5)
        post(server.url, {"app": "Load", "domain": "Row0", "status": "Loading"})
        time.sleep(0.3)
        started = time.monotonic()
        during_hang = post(
            server.url, {"app": "Load", "domain": "Row1", "status": "OK"}
        )
        answer_seconds.append(time.monotonic() - started)
        health = requests.get(server.url + "/health", timeout=5)
        wait_until(
            lambda: shows("Loading") and shows("OK", "Row1"), 10, "both rows after hang"
        )
        rows = server.get("/api/v1/status").json()["apps"]["Load"]
        assert server.process is not None
        alive = server.process.poll() is None

    assert during_hang.status_code == 200
    assert max(answer_seconds) < 1.0, answer_seconds
    assert health.status_code == 200
    assert alive
    assert rows["Row0"]["status"] == "Loading"
    assert rows["Row1"]["status"] == "OK"


# --- (e) file modes ------------------------------------------------------------------


def test_data_files_get_private_modes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {
        **UNLIMITED,
        "EPMPULSE_API_KEY": "",
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.05",
        "EPMPULSE_ALERT_BUNDLE_SECONDS": "0.05",
    }
    # A umask of 0 would leave 0777 folders and 0666 files, so every mode seen
    # below was set by EPMPulse itself.
    umask_zero = ["sh", "-c", 'umask 000 && exec "$@"', "sh"]
    with ServerProcess(data_dir, env, command_prefix=umask_zero) as server:
        key = (data_dir / "secrets" / "api_key").read_text().strip()
        reply = post(
            server.url, {"app": "Modes", "domain": "A", "status": "Error"}, key
        )
        assert reply.status_code == 200
        wait_until(
            lambda: all(
                (data_dir / name).exists()
                for name in ("canvas/main.md", "canvas/arcs.md", "alerts.log")
            ),
            5,
            "the canvas files and the alerts log",
        )
        modes = {
            path.relative_to(data_dir).as_posix(): stat.S_IMODE(path.stat().st_mode)
            for path in [data_dir, *data_dir.rglob("*")]
        }

    expected = {
        name: (0o700 if name == "secrets" else 0o750)
        if (data_dir / name).is_dir()
        else (0o600 if name.startswith("secrets/") else 0o640)
        for name in modes
    }
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != expected[name]}
    assert wrong == {}, "expected folders 0750, files 0640, secrets 0700 and 0600"
    assert "history" in modes
    assert "secrets/api_key" in modes
