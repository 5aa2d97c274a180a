"""JobPoller against the fake pod, through the real client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from epm.auth import BasicAuth, EpmAuth, EpmAuthSettings, build_auth
from epm.client import EpmClient
from epm.config import EpmBlock
from epm.poller import JobPoller
from epm.status import JobState
from epm.tokens import StoredToken, TokenStore
from store.models import Status
from tests.fakes.epm_pod import FakeEpmPod

FAST = {
    "poll_seconds": 0.1,
    "jitter": 0.0,
    "maintenance_retry_seconds": 0.2,
    "auth_retry_seconds": 0.2,
    "max_backoff_seconds": 0.5,
}


@dataclass
class Recorder:
    statuses: list[tuple[str, str, str, Status]] = field(default_factory=list)
    messages: list[str | None] = field(default_factory=list)
    gave_up: list[tuple[str, str, str]] = field(default_factory=list)
    not_found: list[tuple[str, str, str]] = field(default_factory=list)
    maintenance: list[bool] = field(default_factory=list)
    problems: list[tuple[str, str | None]] = field(default_factory=list)

    async def on_status(
        self, app: str, domain: str, job_id: str, state: JobState
    ) -> None:
        self.statuses.append((app, domain, job_id, state.status))
        self.messages.append(state.message)

    async def on_gave_up(self, app: str, domain: str, job_id: str) -> None:
        self.gave_up.append((app, domain, job_id))

    def on_not_found(self, app: str, domain: str, job_id: str) -> None:
        self.not_found.append((app, domain, job_id))

    def on_maintenance(self, active: bool) -> None:
        self.maintenance.append(active)

    async def on_admin_problem(self, key: str, text: str | None) -> None:
        self.problems.append((key, text))

    def status_list(self) -> list[Status]:
        return [entry[3] for entry in self.statuses]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def pod() -> AsyncIterator[FakeEpmPod]:
    async with FakeEpmPod() as fake:
        yield fake


@contextlib.asynccontextmanager
async def started(
    auth: EpmAuth, state_path: Path, recorder: Recorder
) -> AsyncIterator[JobPoller]:
    async with EpmClient(auth) as client:
        poller = JobPoller(
            client,
            state_path,
            on_status=recorder.on_status,
            on_gave_up=recorder.on_gave_up,
            on_not_found=recorder.on_not_found,
            on_maintenance=recorder.on_maintenance,
            on_admin_problem=recorder.on_admin_problem,
            **FAST,
        )
        await poller.start()
        try:
            yield poller
        finally:
            await poller.stop()


@pytest.fixture
async def running(
    pod: FakeEpmPod, tmp_path: Path
) -> AsyncIterator[tuple[JobPoller, Recorder]]:
    recorder = Recorder()
    auth = BasicAuth(pod.username, pod.password)
    async with started(auth, tmp_path / "watch.json", recorder) as poller:
        yield poller, recorder


def block_for(pod: FakeEpmPod, product: Any = "planning") -> EpmBlock:
    return EpmBlock(url=pod.url, product=product, application="Vision")


async def test_poller_follows_loading_to_ok(
    pod: FakeEpmPod, running: tuple[JobPoller, Recorder], tmp_path: Path
) -> None:
    poller, recorder = running
    pod.add_job(
        "planning", 224, [(-1, "Processing"), (-1, "Processing"), (0, "Completed")]
    )

    await poller.watch("Planning", "Actual", "224", block_for(pod), "planning", 60)
    await wait_until(lambda: Status.OK in recorder.status_list())
    # The finished job leaves watch.json in a write on a worker thread.
    state = tmp_path / "watch.json"
    await wait_until(lambda: json.loads(state.read_text())["jobs"] == [])

    assert recorder.statuses == [
        ("Planning", "Actual", "224", Status.LOADING),
        ("Planning", "Actual", "224", Status.OK),
    ]
    assert recorder.messages[-1] == "status 0 (success)"
    assert poller.watched() == []


async def test_poller_stops_polling_finished_job(
    pod: FakeEpmPod, running: tuple[JobPoller, Recorder]
) -> None:
    poller, recorder = running
    pod.add_job("arcs", 7, [(0, "done")])

    await poller.watch("ARCS", "Recs", 7, block_for(pod, "arcs"), "arcs", 60)
    await wait_until(lambda: recorder.statuses != [])
    await asyncio.sleep(0.3)

    assert pod.job_polls("arcs", 7) == 1


async def test_poller_gives_up_after_max_runtime(
    pod: FakeEpmPod, running: tuple[JobPoller, Recorder]
) -> None:
    poller, recorder = running
    pod.add_job("fccs", 31, [(-1, "Processing")])

    await poller.watch("FCCS", "Consol", 31, block_for(pod, "fccs"), "fccs", 0.3)
    await wait_until(lambda: recorder.gave_up != [])

    assert recorder.gave_up == [("FCCS", "Consol", "31")]
    assert recorder.status_list() == [Status.LOADING]
    assert poller.watched() == []


async def test_poller_drops_unknown_job(
    pod: FakeEpmPod,
    running: tuple[JobPoller, Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    poller, recorder = running

    await poller.watch("Planning", "Plan", 404, block_for(pod), "planning", 60)
    await wait_until(lambda: recorder.not_found != [])

    assert recorder.not_found == [("Planning", "Plan", "404")]
    assert recorder.statuses == []
    assert poller.watched() == []
    assert "dropping job 404 of Planning/Plan" in caplog.text


async def test_poller_honours_retry_after(
    pod: FakeEpmPod, running: tuple[JobPoller, Recorder]
) -> None:
    poller, recorder = running
    pod.add_job("planning", 5, [(0, "Completed")])
    pod.rate_limit(retry_after=1)

    await poller.watch("Planning", "Actual", 5, block_for(pod), "planning", 60)
    await wait_until(lambda: recorder.statuses != [])
    first, second = pod.job_requests()[:2]

    assert first.status == 429
    assert second.status == 200
    assert second.at - first.at >= 0.95
    assert recorder.status_list() == [Status.OK]


async def test_poller_backs_off_whole_pod(
    pod: FakeEpmPod, running: tuple[JobPoller, Recorder]
) -> None:
    poller, recorder = running
    pod.add_job("planning", 1, [(0, "Completed")])
    pod.add_job("planning", 2, [(0, "Completed")])
    pod.rate_limit(retry_after=1)

    await poller.watch("A", "D1", 1, block_for(pod), "planning", 60)
    await poller.watch("A", "D2", 2, block_for(pod), "planning", 60)
    await wait_until(lambda: len(recorder.statuses) == 2)
    requests = pod.job_requests()

    # After the 429, neither job is asked for until Retry-After has passed.
    assert requests[0].status == 429
    assert min(r.at for r in requests[1:]) - requests[0].at >= 0.95


async def test_maintenance_reported_then_resumed(
    pod: FakeEpmPod, running: tuple[JobPoller, Recorder]
) -> None:
    poller, recorder = running
    pod.add_job("data_integration", 1881, [("SUCCESS", "0")])
    pod.maintenance = True

    await poller.watch("Planning", "GL", 1881, block_for(pod), "data_integration", 60)
    await wait_until(lambda: recorder.maintenance == [True])
    await asyncio.sleep(0.3)
    statuses_during = list(recorder.statuses)
    pod.maintenance = False
    await wait_until(lambda: recorder.statuses != [])

    assert statuses_during == []
    assert recorder.maintenance == [True, False]
    assert recorder.status_list() == [Status.OK]


async def test_auth_problem_reported_and_cleared(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    pod.add_job("planning", 9, [(0, "Completed")])
    store = TokenStore(tmp_path / "secrets")
    seed = pod.issue_refresh_token()
    pod.expire_refresh_tokens()
    settings = EpmAuthSettings(
        token_url=pod.token_url, client_id=pod.client_id, refresh_token=seed
    )
    recorder = Recorder()
    auth = build_auth(settings, store)
    async with started(auth, tmp_path / "w.json", recorder) as poller:
        await poller.watch("Planning", "Actual", 9, block_for(pod), "planning", 60)
        await wait_until(lambda: recorder.problems != [])
        # The admin runs `epmpulse epm-login`, which stores a new refresh token.
        new_token = pod.issue_refresh_token()
        store.save(StoredToken(new_token, time.time(), pod.token_url, pod.client_id))
        await wait_until(lambda: recorder.statuses != [])

    key, text = recorder.problems[0]
    assert key == "epm_auth"
    assert text is not None
    assert "epmpulse epm-login" in text
    assert recorder.problems[-1] == ("epm_auth", None)
    assert recorder.status_list() == [Status.OK]


async def test_audience_problem_is_no_job_failure(tmp_path: Path) -> None:
    async with FakeEpmPod(client_secret="fake-secret") as pod:
        pod.add_job("planning", 9, [(0, "Completed")])
        settings = EpmAuthSettings(
            token_url=pod.token_url,
            client_id=pod.client_id,
            client_secret="fake-secret",
        )
        recorder = Recorder()
        auth = build_auth(settings, TokenStore(tmp_path))
        async with started(auth, tmp_path / "w.json", recorder) as poller:
            await poller.watch("Planning", "Actual", 9, block_for(pod), "planning", 60)
            await wait_until(lambda: recorder.problems != [])
            await asyncio.sleep(0.3)

    assert recorder.problems[0][0] == f"epm_auth:{pod.url}"
    assert "secondary audience" in (recorder.problems[0][1] or "")
    assert len(recorder.problems) == 1
    assert recorder.statuses == []
    assert [job.job_id for job in poller.watched()] == ["9"]


async def test_watch_list_survives_restart(pod: FakeEpmPod, tmp_path: Path) -> None:
    state_path = tmp_path / "watch.json"
    auth = BasicAuth(pod.username, pod.password)
    pod.add_job(
        "planning", 77, [(-1, "Processing"), (0, "Completed")], advance_on_poll=False
    )
    first_recorder = Recorder()
    async with started(auth, state_path, first_recorder) as first:
        await first.watch("Planning", "Actual", 77, block_for(pod), "planning", 60)
        await wait_until(lambda: first_recorder.statuses != [])

    pod.advance("planning", 77)
    second_recorder = Recorder()
    async with started(auth, state_path, second_recorder):
        await wait_until(lambda: second_recorder.statuses != [])

    assert first_recorder.status_list() == [Status.LOADING]
    assert second_recorder.statuses == [("Planning", "Actual", "77", Status.OK)]


async def test_failed_status_callback_is_retried(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    pod.add_job("planning", 3, [(0, "Completed")])
    calls: list[Status] = []

    async def flaky(app: str, domain: str, job_id: str, state: JobState) -> None:
        calls.append(state.status)
        if len(calls) == 1:
            raise RuntimeError("store is busy")

    async with EpmClient(BasicAuth(pod.username, pod.password)) as client:
        poller = JobPoller(client, tmp_path / "w.json", on_status=flaky, **FAST)
        await poller.start()
        try:
            await poller.watch("Planning", "Actual", 3, block_for(pod), "planning", 60)
            await wait_until(lambda: len(calls) == 2)
            await wait_until(lambda: poller.watched() == [])
        finally:
            await poller.stop()

    assert calls == [Status.OK, Status.OK]


async def test_new_job_replaces_row_watch(
    pod: FakeEpmPod, running: tuple[JobPoller, Recorder]
) -> None:
    poller, recorder = running
    pod.add_job("planning", 10, [(-1, "Processing")])
    pod.add_job("planning", 11, [(-1, "Processing")])

    await poller.watch("Planning", "Actual", 10, block_for(pod), "planning", 60)
    await poller.watch("Planning", "Actual", 11, block_for(pod), "planning", 60)

    assert [job.job_id for job in poller.watched()] == ["11"]


async def test_watch_rejects_non_numeric_job_id(
    pod: FakeEpmPod, running: tuple[JobPoller, Recorder]
) -> None:
    poller, _ = running

    with pytest.raises(ValueError, match="job_id"):
        await poller.watch(
            "Planning", "Actual", "TEST_001", block_for(pod), "planning", 60
        )


async def test_invalid_state_file_is_kept_aside(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    state_path = tmp_path / "watch.json"
    state_path.write_text("{not json")
    async with started(BasicAuth("u", "p"), state_path, Recorder()) as poller:
        watched = poller.watched()

    assert watched == []
    assert (tmp_path / "watch.json.invalid").read_text() == "{not json"


async def test_idle_poller_keeps_refresh_token_alive(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    store = TokenStore(tmp_path / "secrets")
    six_and_a_half_days = 6.5 * 86400
    old_token = pod.issue_refresh_token()
    store.save(
        StoredToken(
            old_token, time.time() - six_and_a_half_days, pod.token_url, pod.client_id
        )
    )
    settings = EpmAuthSettings(token_url=pod.token_url, client_id=pod.client_id)

    async with started(build_auth(settings, store), tmp_path / "w.json", Recorder()):
        await wait_until(lambda: pod.token_requests() != [])

    stored = store.load()
    assert pod.token_requests()[0].status == 200
    assert stored is not None
    assert stored.refresh_token != old_token
    assert time.time() - stored.refreshed_at < 60
