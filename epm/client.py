"""Async client of the EPM Cloud job status APIs.

Usage::

    async with EpmClient(auth) as client:
        state = await client.get_job_status(block, "planning", "224")
"""

from __future__ import annotations

import logging
from types import TracebackType

import aiohttp

from epm._http import DEFAULT_TIMEOUT, is_json, parse_json_object, retry_after_of
from epm.auth import EpmAuth
from epm.config import EpmBlock, Product
from epm.errors import (
    EpmAuthError,
    EpmConnectionError,
    EpmMaintenance,
    EpmResponseError,
    EpmRetryableError,
    JobNotFound,
)
from epm.status import JobState, job_status_path, map_job_status

logger = logging.getLogger(__name__)

_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


def pod_problem_key(pod_url: str) -> str:
    """Return the admin-problem key of authentication problems at one pod."""
    return f"epm_auth:{pod_url}"


class EpmClient:
    """Reads job statuses from EPM pods.

    The aiohttp session is created on first use, inside the running event loop,
    and closed by close() or by leaving the ``async with`` block.
    """

    def __init__(
        self,
        auth: EpmAuth,
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self.auth = auth
        self._timeout = timeout
        self._session = session
        self._owns_session = session is None
        self._trace_configs = trace_configs

    async def __aenter__(self) -> EpmClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, trace_configs=self._trace_configs
            )
            self._owns_session = True
        return self._session

    async def keep_auth_alive(self) -> None:
        """Refresh stored credentials that would otherwise expire unused."""
        await self.auth.keep_alive(self._get_session())

    async def get_job_status(
        self, epm: EpmBlock, product: Product, job_id: str | int
    ) -> JobState:
        """Return the mapped status of one job.

        Raises JobNotFound (404), EpmMaintenance (503 with a non-JSON body),
        EpmRetryableError with the Retry-After delay (429, 502, 503 with JSON, 504,
        connection errors), EpmAuthError (401 after one fresh token, 403) and
        EpmResponseError for anything else. ValueError for a non-numeric job id.
        """
        job_id = str(job_id)
        url = epm.url + job_status_path(product, epm.application, job_id)
        session = self._get_session()
        where = f"{product} job {job_id} at {epm.url}"

        for attempt in (1, 2):
            authorization = await self.auth.authorization(session)
            headers = {"Authorization": authorization, "Accept": "application/json"}
            try:
                # Redirects are not followed, so the Authorization header cannot be
                # sent to another host.
                async with session.get(
                    url, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    body = await response.read()
                    www_authenticate = response.headers.get("WWW-Authenticate", "")
                    retry_after = retry_after_of(response.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise EpmConnectionError(
                    f"{where}: request failed ({type(exc).__name__})"
                ) from exc

            logger.debug("GET %s returned HTTP %d", url, status)
            if status != 401:
                return _handle(status, body, retry_after, product, epm.url, where)
            if "token audience" in www_authenticate.lower():
                await self.auth.invalidate(authorization)
                raise EpmAuthError(pod_problem_key(epm.url), _audience_fix(epm.url))
            if attempt == 1 and await self.auth.invalidate(authorization):
                continue
            raise EpmAuthError(
                pod_problem_key(epm.url), self.auth.rejected_fix(epm.url)
            )
        raise AssertionError("unreachable")


def _handle(
    status: int,
    body: bytes,
    retry_after: float | None,
    product: Product,
    pod_url: str,
    where: str,
) -> JobState:
    if 200 <= status < 300:
        document = parse_json_object(body)
        if document is None:
            raise EpmResponseError(
                f"{where}: HTTP {status} body is not a JSON object", status
            )
        return map_job_status(product, document)
    if status == 404:
        raise JobNotFound(f"{where}: not found (HTTP 404)")
    # During the daily maintenance window a pod returns 503 with an HTML page,
    # while a busy pod returns 503 with a JSON error.
    if status == 503 and not is_json(body):
        raise EpmMaintenance(f"{where}: HTTP 503 with a non-JSON body (maintenance)")
    if status in _RETRYABLE_STATUSES:
        raise EpmRetryableError(f"{where}: HTTP {status}", retry_after)
    if status == 403:
        raise EpmAuthError(
            pod_problem_key(pod_url),
            f"The pod {pod_url} refused access to job status (HTTP 403). Give the "
            "EPM user a role that may view jobs, such as Service Administrator.",
        )
    if 300 <= status < 400:
        raise EpmResponseError(
            f"{where}: HTTP {status} redirect; check that epm.url is the pod base URL",
            status,
        )
    raise EpmResponseError(f"{where}: unexpected HTTP {status}", status)


def _audience_fix(pod_url: str) -> str:
    return (
        f"The pod {pod_url} rejected the access token because of its audience "
        "(WWW-Authenticate: Token Audience). In the identity domain, add "
        f"{pod_url} as a secondary audience of the integrated application."
    )
