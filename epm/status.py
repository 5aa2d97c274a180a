"""Job status paths and the mapping of each product's job status body to a Status.

Each API family has its own status vocabulary, so each has its own mapping:

- Planning, FCCS, Tax Reporting and FreeForm (Planning REST v3): ``status`` is -1 in
  progress, 0 success, 1 error, 2 cancel pending, 3 cancelled, 4 invalid parameter
  and 2147483647 (Integer.MAX_VALUE) unknown.
- Data Integration (``/aif/rest/V1``): the text ``jobStatus`` (RUNNING, SUCCESS,
  WARNING, FAILED) decides; ``status`` uses the Planning codes, sometimes as a string.
- Account Reconciliation (``/armARCS/rest/v1``): -1 in progress, 0 success, any
  positive value failed. A status 0 body can still report a partial failure in
  ``details`` ("Unsuccessfully copied : 1").

Fields that a mapping does not read are ignored, so new fields such as
``detailedStatus`` (added in 26.04) do not break it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from epm.config import PLANNING_FAMILY, Product
from store.models import Status

UNKNOWN_CODE = 2147483647
MAX_MESSAGE_CHARS = 1000

_PLANNING_CODES: dict[int, tuple[str, Status]] = {
    -1: ("in progress", Status.LOADING),
    0: ("success", Status.OK),
    1: ("error", Status.ERROR),
    # Cancel pending is not final: the job may still finish or become cancelled.
    2: ("cancel pending", Status.LOADING),
    3: ("cancelled", Status.WARNING),
    4: ("invalid parameter", Status.ERROR),
    UNKNOWN_CODE: ("unknown", Status.WARNING),
}

_DI_JOB_STATUSES: dict[str, Status] = {
    "RUNNING": Status.LOADING,
    "SUCCESS": Status.OK,
    "WARNING": Status.WARNING,
    "FAILED": Status.ERROR,
}

_ARCS_UNSUCCESSFUL = re.compile(r"unsuccessfully\s+copied\s*:\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class JobState:
    """One job's status as read from EPM.

    ``code`` is the product's raw code (the numeric ``status``, or DI's ``jobStatus``
    text), and ``finished`` is True once the job will not change any more.
    """

    status: Status
    message: str | None
    code: int | str | None
    finished: bool


def job_status_path(product: Product, application: str, job_id: str) -> str:
    """Return the path of the job status resource, relative to the pod URL.

    ``job_id`` must be a decimal number: EPM job ids are numbers, and the check
    keeps the value from changing the path.
    """
    if not job_id.isdecimal() or not job_id.isascii():
        raise ValueError(f"job_id: {job_id!r} is not a numeric EPM job id")
    if product in PLANNING_FAMILY:
        app = quote(application, safe="")
        return f"/HyperionPlanning/rest/v3/applications/{app}/jobs/{job_id}"
    if product == "data_integration":
        return f"/aif/rest/V1/jobs/{job_id}"
    if product == "arcs":
        return f"/armARCS/rest/v1/jobs/{job_id}"
    raise ValueError(f"product: {product!r} is not a supported EPM product")


def map_job_status(product: Product, body: Mapping[str, Any]) -> JobState:
    """Map a job status body of ``product`` to a JobState."""
    if product in PLANNING_FAMILY:
        return map_planning(body)
    if product == "data_integration":
        return map_data_integration(body)
    if product == "arcs":
        return map_arcs(body)
    raise ValueError(f"product: {product!r} is not a supported EPM product")


def map_planning(body: Mapping[str, Any]) -> JobState:
    """Map a Planning REST v3 job status body (Planning, FCCS, Tax, FreeForm)."""
    code = _parse_code(body.get("status"))
    details = _clean_details(body.get("details"))
    return _from_planning_code(code, details)


def map_data_integration(body: Mapping[str, Any]) -> JobState:
    """Map a Data Integration job status body: ``jobStatus`` first, then ``status``."""
    details = _clean_details(body.get("details"))
    raw_job_status = body.get("jobStatus")
    if isinstance(raw_job_status, str) and raw_job_status.strip():
        job_status = raw_job_status.strip().upper()
        status = _DI_JOB_STATUSES.get(job_status)
        if status is not None:
            message = _compose(f"jobStatus {job_status}", details)
            return JobState(status, message, job_status, status.is_terminal)

    # NOTE: an unlisted jobStatus value falls back to the numeric status, so a
    # new in-progress value with status -1 keeps the job followed.
    return _from_planning_code(_parse_code(body.get("status")), details)


def map_arcs(body: Mapping[str, Any]) -> JobState:
    """Map an Account Reconciliation job status body."""
    code = _parse_code(body.get("status"))
    details = _clean_details(body.get("details"))
    if code == -1:
        return JobState(
            Status.LOADING, _compose("status -1 (in progress)", details), code, False
        )
    if code == 0:
        if _arcs_unsuccessful_count(body.get("details")) > 0:
            message = _compose("status 0 (partial failure)", details)
            return JobState(Status.WARNING, message, code, True)
        return JobState(Status.OK, _compose("status 0 (success)", details), code, True)
    if code is not None and code > 0:
        return JobState(
            Status.ERROR, _compose(f"status {code} (failed)", details), code, True
        )
    return _unknown(code, details)


def _from_planning_code(code: int | None, details: str | None) -> JobState:
    known = _PLANNING_CODES.get(code) if code is not None else None
    if known is None:
        return _unknown(code, details)
    name, status = known
    return JobState(
        status, _compose(f"status {code} ({name})", details), code, status.is_terminal
    )


def _unknown(code: int | None, details: str | None) -> JobState:
    label = "status missing (unknown)" if code is None else f"status {code} (unknown)"
    return JobState(Status.WARNING, _compose(label, details), code, True)


def _parse_code(value: object) -> int | None:
    # bool is an int subclass, but true/false is no status code.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _clean_details(value: object) -> str | None:
    # Data Integration sends a missing value as the string "null".
    if value is None or not isinstance(value, str | int | float):
        return None
    lines = [line.strip() for line in str(value).splitlines()]
    text = "; ".join(line for line in lines if line)
    if not text or text.lower() == "null":
        return None
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def _compose(label: str, details: str | None) -> str:
    return f"{label}: {details}" if details else label


def _arcs_unsuccessful_count(details: object) -> int:
    # Read the raw text, because the message may be cut short.
    if not isinstance(details, str):
        return 0
    return sum(int(count) for count in _ARCS_UNSUCCESSFUL.findall(details))
