"""Job status mapping per product, read through the real client from the fake pod."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from epm.auth import BasicAuth
from epm.client import EpmClient
from epm.config import EpmBlock
from epm.status import JobState, job_status_path, map_data_integration, map_planning
from store.models import Status
from tests.fakes.epm_pod import FakeEpmPod


@pytest.fixture
async def pod() -> AsyncIterator[FakeEpmPod]:
    async with FakeEpmPod() as fake:
        yield fake


@pytest.fixture
async def client(pod: FakeEpmPod) -> AsyncIterator[EpmClient]:
    async with EpmClient(BasicAuth(pod.username, pod.password)) as epm_client:
        yield epm_client


async def read_once(
    pod: FakeEpmPod, client: EpmClient, product: Any, step: Any
) -> JobState:
    pod.add_job(product, 224, [step])
    block = EpmBlock(url=pod.url, product=product, application="Vision")
    return await client.get_job_status(block, product, "224")


PLANNING_CASES = [
    (-1, "Processing", Status.LOADING, False),
    (0, "Completed", Status.OK, True),
    (1, "Error", Status.ERROR, True),
    (2, "Cancel Pending", Status.LOADING, False),
    (3, "Cancelled", Status.WARNING, True),
    (4, "Invalid Parameter", Status.ERROR, True),
    (2147483647, "Unknown", Status.WARNING, True),
    (7, "Something New", Status.WARNING, True),
]


@pytest.mark.parametrize("product", ["planning", "fccs", "tax", "freeform"])
@pytest.mark.parametrize(("code", "text", "expected", "finished"), PLANNING_CASES)
async def test_planning_family_maps_every_code(
    pod: FakeEpmPod,
    client: EpmClient,
    product: str,
    code: int,
    text: str,
    expected: Status,
    finished: bool,
) -> None:
    state = await read_once(pod, client, product, (code, text))

    assert state.status is expected
    assert state.finished is finished
    assert state.code == code


async def test_planning_message_names_code_and_details(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    state = await read_once(
        pod, client, "planning", (1, "Error", "The dimension Time is invalid.")
    )

    assert state.message == "status 1 (error): The dimension Time is invalid."


async def test_planning_null_details_gives_code_only(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    state = await read_once(pod, client, "planning", (-1, "Processing"))

    assert state.message == "status -1 (in progress)"


DI_CASES = [
    (("RUNNING", -1), Status.LOADING, False),
    (("SUCCESS", 0), Status.OK, True),
    (("WARNING", 0), Status.WARNING, True),
    (("FAILED", 1), Status.ERROR, True),
    # The documented example sends status as a string.
    (("SUCCESS", "0"), Status.OK, True),
    # jobStatus decides even when status disagrees.
    (("FAILED", "0"), Status.ERROR, True),
    # Without jobStatus, status uses the Planning codes, as a number or a string.
    ((None, -1), Status.LOADING, False),
    ((None, "-1"), Status.LOADING, False),
    ((None, 0), Status.OK, True),
    ((None, "1"), Status.ERROR, True),
    ((None, 3), Status.WARNING, True),
    ((None, "garbage"), Status.WARNING, True),
]


@pytest.mark.parametrize(("step", "expected", "finished"), DI_CASES)
async def test_data_integration_maps_job_status(
    pod: FakeEpmPod,
    client: EpmClient,
    step: tuple[Any, ...],
    expected: Status,
    finished: bool,
) -> None:
    state = await read_once(pod, client, "data_integration", step)

    assert state.status is expected
    assert state.finished is finished


async def test_data_integration_message_names_job_status(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    state = await read_once(
        pod, client, "data_integration", ("FAILED", "1", "Error loading period Mar-20")
    )

    assert state.message == "jobStatus FAILED: Error loading period Mar-20"
    assert state.code == "FAILED"


async def test_data_integration_null_string_details_ignored(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    state = await read_once(pod, client, "data_integration", ("SUCCESS", "0", "null"))

    assert state.message == "jobStatus SUCCESS"


ARCS_CASES = [
    ((-1, "In Process"), Status.LOADING, False),
    ((0, "Total to copy : 3\nSuccessfully copied : 3\n"), Status.OK, True),
    ((0, None), Status.OK, True),
    (
        (0, "Total to copy : 3\nSuccessfully copied : 2\nUnsuccessfully copied : 1\n"),
        Status.WARNING,
        True,
    ),
    ((0, "Unsuccessfully copied : 0"), Status.OK, True),
    ((1, "Import failed"), Status.ERROR, True),
    ((17, None), Status.ERROR, True),
    ((-5, None), Status.WARNING, True),
]


@pytest.mark.parametrize(("step", "expected", "finished"), ARCS_CASES)
async def test_arcs_maps_status_and_partial_failure(
    pod: FakeEpmPod,
    client: EpmClient,
    step: tuple[Any, ...],
    expected: Status,
    finished: bool,
) -> None:
    state = await read_once(pod, client, "arcs", step)

    assert state.status is expected
    assert state.finished is finished


async def test_arcs_partial_failure_message_keeps_counts(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    details = "Total to copy : 3\nSuccessfully copied : 2\nUnsuccessfully copied : 1\n"
    state = await read_once(pod, client, "arcs", (0, details))

    assert state.message == (
        "status 0 (partial failure): Total to copy : 3; Successfully copied : 2; "
        "Unsuccessfully copied : 1"
    )


async def test_planning_ignores_unknown_fields(
    pod: FakeEpmPod, client: EpmClient
) -> None:
    step = {
        "status": 0,
        "descriptiveStatus": "Completed",
        "detailedStatus": 99,
        "x": {},
    }
    state = await read_once(pod, client, "planning", step)

    assert state.status is Status.OK


def test_planning_missing_status_is_unknown_warning() -> None:
    state = map_planning({"jobId": 5, "descriptiveStatus": "Processing"})

    assert state.status is Status.WARNING
    assert state.message == "status missing (unknown)"


def test_boolean_status_is_not_a_code() -> None:
    state = map_planning({"status": False})

    assert state.status is Status.WARNING
    assert state.code is None


def test_data_integration_unlisted_job_status_uses_code() -> None:
    state = map_data_integration({"jobStatus": "QUEUED", "status": -1})

    assert state.status is Status.LOADING


def test_long_details_are_shortened() -> None:
    state = map_planning({"status": 1, "details": "x" * 5000})

    assert state.message is not None
    assert len(state.message) < 1100


def test_status_path_per_product() -> None:
    assert job_status_path("fccs", "Consol App", "95") == (
        "/HyperionPlanning/rest/v3/applications/Consol%20App/jobs/95"
    )
    assert job_status_path("data_integration", "X", "1881") == "/aif/rest/V1/jobs/1881"
    assert job_status_path("arcs", "X", "100000103240030") == (
        "/armARCS/rest/v1/jobs/100000103240030"
    )


@pytest.mark.parametrize("job_id", ["", "12a", "../1", "-1", "١٢"])
def test_status_path_rejects_non_numeric_id(job_id: str) -> None:
    with pytest.raises(ValueError, match="job_id"):
        job_status_path("planning", "Vision", job_id)
