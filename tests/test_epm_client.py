"""EPM client error handling against the fake pod."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path

import aiohttp
import pytest

from epm._http import parse_retry_after
from epm.auth import BasicAuth, EpmAuthSettings, RefreshTokenAuth
from epm.client import EpmClient
from epm.config import EpmBlock
from epm.errors import (
    EpmAuthError,
    EpmConnectionError,
    EpmMaintenance,
    EpmResponseError,
    EpmRetryableError,
    JobNotFound,
)
from epm.tokens import TokenStore
from store.models import Status
from tests.fakes.epm_pod import MAINTENANCE_PAGE, FakeEpmPod


@pytest.fixture
async def pod() -> AsyncIterator[FakeEpmPod]:
    async with FakeEpmPod() as fake:
        fake.add_job("planning", 224, [(-1, "Processing")])
        yield fake


@pytest.fixture
async def client(pod: FakeEpmPod) -> AsyncIterator[EpmClient]:
    async with EpmClient(BasicAuth(pod.username, pod.password)) as epm_client:
        yield epm_client


def block_for(pod: FakeEpmPod) -> EpmBlock:
    return EpmBlock(url=pod.url, product="planning", application="Vision")


async def test_maintenance_page_raises_maintenance(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    pod.maintenance = True

    with pytest.raises(EpmMaintenance):
        await client.get_job_status(block_for(pod), "planning", 224)


async def test_maintenance_applies_to_every_product(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    pod.maintenance = True
    block = block_for(pod)

    for product in ("fccs", "data_integration", "arcs"):
        with pytest.raises(EpmMaintenance):
            await client.get_job_status(block, product, 224)


async def test_json_503_is_retryable(pod: FakeEpmPod, client: EpmClient) -> None:
    pod.respond_next(
        503, '{"detail": "busy", "status": 503}', headers={"Retry-After": "7"}
    )

    with pytest.raises(EpmRetryableError) as caught:
        await client.get_job_status(block_for(pod), "planning", 224)

    assert not isinstance(caught.value, EpmMaintenance)
    assert caught.value.retry_after == 7.0


async def test_429_carries_retry_after(pod: FakeEpmPod, client: EpmClient) -> None:
    pod.rate_limit(retry_after=12)

    with pytest.raises(EpmRetryableError) as caught:
        await client.get_job_status(block_for(pod), "planning", 224)

    assert caught.value.retry_after == 12.0


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_errors_are_retryable(
    pod: FakeEpmPod, client: EpmClient, status: int
) -> None:
    pod.respond_next(status, "<html>Bad gateway</html>", content_type="text/html")

    with pytest.raises(EpmRetryableError) as caught:
        await client.get_job_status(block_for(pod), "planning", 224)

    assert caught.value.retry_after is None


async def test_unknown_job_raises_not_found(pod: FakeEpmPod, client: EpmClient) -> None:
    with pytest.raises(JobNotFound):
        await client.get_job_status(block_for(pod), "planning", 999)


async def test_wrong_application_raises_not_found(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    block = EpmBlock(url=pod.url, product="planning", application="Other")

    with pytest.raises(JobNotFound):
        await client.get_job_status(block, "planning", 224)


async def test_forbidden_is_auth_error(pod: FakeEpmPod, client: EpmClient) -> None:
    pod.respond_next(403, '{"detail": "Forbidden", "status": 403}')

    with pytest.raises(EpmAuthError) as caught:
        await client.get_job_status(block_for(pod), "planning", 224)

    assert caught.value.key == f"epm_auth:{pod.url}"
    assert "role" in caught.value.fix


async def test_non_json_success_is_response_error(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    pod.respond_next(200, "<html>login page</html>", content_type="text/html")

    with pytest.raises(EpmResponseError):
        await client.get_job_status(block_for(pod), "planning", 224)


async def test_redirect_is_not_followed(pod: FakeEpmPod, client: EpmClient) -> None:
    pod.respond_next(302, "", headers={"Location": "http://127.0.0.1:9/elsewhere"})

    with pytest.raises(EpmResponseError, match="redirect"):
        await client.get_job_status(block_for(pod), "planning", 224)

    assert len(pod.requests) == 1


async def test_server_error_is_response_error(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    pod.respond_next(500, '{"detail": "Internal error", "status": 500}')

    with pytest.raises(EpmResponseError) as caught:
        await client.get_job_status(block_for(pod), "planning", 224)

    assert caught.value.http_status == 500


async def test_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    block = EpmBlock(url=f"http://127.0.0.1:{port}", product="arcs", application="A")

    async with EpmClient(BasicAuth("user", "pw")) as client:
        with pytest.raises(EpmConnectionError):
            await client.get_job_status(block, "arcs", 1)


async def test_expired_access_token_reauthenticates_once(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    settings = EpmAuthSettings(
        token_url=pod.token_url,
        client_id=pod.client_id,
        refresh_token=pod.issue_refresh_token(),
    )
    auth = RefreshTokenAuth(settings, TokenStore(tmp_path))
    async with EpmClient(auth) as client:
        await client.get_job_status(block_for(pod), "planning", 224)
        pod.expire_access_tokens()
        state = await client.get_job_status(block_for(pod), "planning", 224)

    assert state.status is Status.LOADING
    assert [r.status for r in pod.job_requests()] == [200, 401, 200]
    assert len(pod.token_requests()) == 2


async def test_token_requests_carry_no_pod_credentials(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    settings = EpmAuthSettings(
        token_url=pod.token_url,
        client_id=pod.client_id,
        refresh_token=pod.issue_refresh_token(),
    )
    async with EpmClient(RefreshTokenAuth(settings, TokenStore(tmp_path))) as client:
        await client.get_job_status(block_for(pod), "planning", 224)

    assert pod.token_requests()[0].auth_scheme is None
    assert pod.job_requests()[0].auth_scheme == "Bearer"


async def test_fake_runs_in_thread() -> None:
    with FakeEpmPod.in_thread() as pod:
        pod.add_job("arcs", 100000103240030, [(-1, "In Process"), (0, None)])
        block = EpmBlock(url=pod.url, product="arcs", application="ARCS")
        async with EpmClient(BasicAuth(pod.username, pod.password)) as client:
            first = await client.get_job_status(block, "arcs", "100000103240030")
            second = await client.get_job_status(block, "arcs", "100000103240030")

    assert first.status is Status.LOADING
    assert second.status is Status.OK


async def test_maintenance_body_is_html() -> None:
    # The client's maintenance check depends on this body not being JSON.
    async with FakeEpmPod() as pod, aiohttp.ClientSession() as session:
        pod.maintenance = True
        async with session.get(f"{pod.url}/aif/rest/V1/jobs/1") as response:
            body = await response.text()

    assert response.status == 503
    assert body == MAINTENANCE_PAGE


def test_retry_after_accepts_http_date() -> None:
    now = 1_700_000_000.0
    header = formatdate(now + 30, usegmt=True)

    assert parse_retry_after(header, now=now) == 30.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("soon", None), ("5", 5.0), ("999999", 3600.0)],
)
def test_retry_after_values(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


async def test_concurrent_reads_in_one_session(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    pod.add_job("data_integration", 1881, [("RUNNING", -1)])
    block = block_for(pod)

    states = await asyncio.gather(
        client.get_job_status(block, "planning", 224),
        client.get_job_status(block, "data_integration", 1881),
    )

    assert [s.status for s in states] == [Status.LOADING, Status.LOADING]
