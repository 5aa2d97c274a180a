"""A fake Oracle EPM Cloud pod and identity domain on 127.0.0.1, for tests.

It serves the job status APIs of the three API families with the body shapes that
real pods return. Its OAuth token endpoint behaves like IDCS: refresh tokens are
single-use and rotate, the device-code grant works, and pods reject
client-credentials tokens for their audience unless a test allows them.

Usage::

    async with FakeEpmPod() as pod:                     # in the test's event loop
        pod.add_job("planning", 224, [(-1, "Processing"), (0, "Completed")])
        first_token = pod.issue_refresh_token()

    with FakeEpmPod.in_thread() as pod:                 # for a server subprocess
        ...

Job steps advance by one on every status request (``advance_on_poll=True``) or
by ``pod.advance(product, job_id)``. A step is a tuple read per family, or a dict
of body fields that replaces the defaults:

- planning, fccs, tax, freeform: ``(status, descriptiveStatus[, details])``
- data_integration: ``(jobStatus or None, status[, details])``; status may be a str
- arcs: ``(status, details)``

Recorded requests hold the method, path, auth scheme, Basic user name and grant
type, never a password, secret or token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PLANNING_PRODUCTS = frozenset({"planning", "fccs", "tax", "freeform"})
PRODUCTS = PLANNING_PRODUCTS | {"data_integration", "arcs"}
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

MAINTENANCE_PAGE = (
    "<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>Oracle EPM Cloud is undergoing its "
    "daily maintenance. Please try again later.</p></body></html>"
)

Step = tuple[Any, ...] | Mapping[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, without any secret; ``at`` is monotonic time."""

    method: str
    path: str
    status: int
    at: float
    auth_scheme: str | None = None
    basic_user: str | None = None
    grant_type: str | None = None


@dataclass
class FakeJob:
    family: str
    product: str
    job_id: int
    application: str
    job_name: str
    steps: list[Step]
    advance_on_poll: bool
    index: int = 0
    polls: int = 0


@dataclass
class _AccessToken:
    expires_at: float
    audience_ok: bool


@dataclass
class _Device:
    user_code: str
    scope: str
    expires_at: float
    approved: bool | None = None


@dataclass
class _CannedResponse:
    status: int
    body: str
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def _family(product: str) -> str:
    if product in PLANNING_PRODUCTS:
        return "planning"
    if product in ("data_integration", "arcs"):
        return product
    raise ValueError(f"unknown product {product!r}")


class FakeEpmPod:
    """A fake EPM pod plus identity domain; see the module docstring."""

    def __init__(
        self,
        *,
        client_id: str = "epmpulse-client",
        client_secret: str | None = None,
        username: str = "epm.admin",
        password: str = "fake-password",
        expires_in: int = 3600,
        accept_client_credentials: bool = False,
        device_interval: int = 1,
        device_expires_in: int = 600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.expires_in = expires_in
        self.accept_client_credentials = accept_client_credentials
        self.device_interval = device_interval
        self.device_expires_in = device_expires_in
        self.maintenance = False
        # Called (in the server's thread) before a job status body is built.
        self.on_job_request: Callable[[], None] | None = None
        # Number of device-code polls that still get slow_down.
        self.slow_down_polls = 0

        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, int], FakeJob] = {}
        self._refresh_tokens: set[str] = set()
        self._consumed: set[str] = set()
        self._expired: set[str] = set()
        self._access_tokens: dict[str, _AccessToken] = {}
        self._devices: dict[str, _Device] = {}
        self._canned: list[_CannedResponse] = []
        self._requests: list[RecordedRequest] = []
        self._counter = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # Addresses

    @property
    def url(self) -> str:
        """Base URL of the pod (also the identity domain)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/v1/token"

    @property
    def device_url(self) -> str:
        return f"{self.url}/oauth2/v1/device"

    # Lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/oauth2/v1/token", self._token)
        app.router.add_post("/oauth2/v1/device", self._device)
        app.router.add_get(
            "/HyperionPlanning/rest/v3/applications/{app}/jobs/{job_id}",
            self._planning_job,
        )
        app.router.add_get("/aif/rest/V1/jobs/{job_id}", self._di_job)
        app.router.add_get("/armARCS/rest/v1/jobs/{job_id}", self._arcs_job)
        app.router.add_get(
            "/interop/rest/v2/maintenance/getdailymaintenancestarttime",
            self._maintenance_time,
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeEpmPod:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, **kwargs: Any) -> Iterator[FakeEpmPod]:
        """Run a fake in a background thread with its own event loop."""
        pod = cls(**kwargs)
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(pod.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(pod.close())
            loop.close()

        thread = threading.Thread(target=serve, name="fake-epm-pod", daemon=True)
        thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake EPM pod did not start within 10 s")
        if failure:
            raise failure[0]
        try:
            yield pod
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    # Test controls

    def add_job(
        self,
        product: str,
        job_id: int | str,
        steps: Sequence[Step],
        *,
        application: str = "Vision",
        job_name: str = "ForecastData",
        advance_on_poll: bool = True,
    ) -> None:
        """Script a job: its status requests return ``steps`` in order."""
        if not steps:
            raise ValueError("a job needs at least one step")
        family = _family(product)
        with self._lock:
            self._jobs[(family, int(job_id))] = FakeJob(
                family=family,
                product=product,
                job_id=int(job_id),
                application=application,
                job_name=job_name,
                steps=list(steps),
                advance_on_poll=advance_on_poll,
            )

    def advance(self, product: str, job_id: int | str) -> None:
        """Move a job to its next step (it stays on the last one)."""
        with self._lock:
            job = self._jobs[(_family(product), int(job_id))]
            job.index = min(job.index + 1, len(job.steps) - 1)

    def remove_job(self, product: str, job_id: int | str) -> None:
        with self._lock:
            self._jobs.pop((_family(product), int(job_id)), None)

    def job_polls(self, product: str, job_id: int | str) -> int:
        with self._lock:
            return self._jobs[(_family(product), int(job_id))].polls

    def issue_refresh_token(self) -> str:
        """Create a valid refresh token, as a device login would."""
        token = f"rt-{secrets.token_urlsafe(16)}"
        with self._lock:
            self._refresh_tokens.add(token)
        return token

    def live_refresh_tokens(self) -> set[str]:
        with self._lock:
            return set(self._refresh_tokens)

    def expire_refresh_tokens(self) -> None:
        """Make every live refresh token expired, as after 7 days without use."""
        with self._lock:
            self._expired |= self._refresh_tokens
            self._refresh_tokens.clear()

    def expire_access_tokens(self) -> None:
        with self._lock:
            for token in self._access_tokens.values():
                token.expires_at = 0.0

    def approve_device(self, approved: bool = True) -> int:
        """Approve (or deny) every pending device login; return how many."""
        with self._lock:
            pending = [d for d in self._devices.values() if d.approved is None]
            for device in pending:
                device.approved = approved
            return len(pending)

    def respond_next(
        self,
        status: int,
        body: str = "",
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        count: int = 1,
    ) -> None:
        """Return this response to the next ``count`` EPM requests, before auth."""
        canned = _CannedResponse(status, body, content_type, dict(headers or {}))
        with self._lock:
            self._canned.extend([canned] * count)

    def rate_limit(self, retry_after: int | str = 1, count: int = 1) -> None:
        """Return 429 with Retry-After to the next ``count`` EPM requests."""
        self.respond_next(
            429,
            json.dumps({"detail": "Too many requests", "status": 429}),
            headers={"Retry-After": str(retry_after)},
            count=count,
        )

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def token_requests(self, grant_type: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests_to("/oauth2/v1/token")
            if grant_type is None or r.grant_type == grant_type
        ]

    def job_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if not r.path.startswith("/oauth2/")]

    # Server side

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        scheme, user = _describe_auth(request.headers.get("Authorization"))
        grant_type = None
        if request.path == "/oauth2/v1/token":
            grant_type = (await request.post()).get("grant_type")
        response = await self._respond(request, handler)
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.path,
                    status=response.status,
                    at=time.monotonic(),
                    auth_scheme=scheme,
                    basic_user=user,
                    grant_type=grant_type if isinstance(grant_type, str) else None,
                )
            )
        return response

    async def _respond(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.path.startswith("/oauth2/"):
            response: web.StreamResponse = await handler(request)
            return response
        with self._lock:
            if self.maintenance:
                return web.Response(
                    status=503, text=MAINTENANCE_PAGE, content_type="text/html"
                )
            canned = self._canned.pop(0) if self._canned else None
        if canned is not None:
            return web.Response(
                status=canned.status,
                text=canned.body,
                content_type=canned.content_type,
                headers=canned.headers,
            )
        denied = self._check_pod_auth(request.headers.get("Authorization"))
        if denied is not None:
            return denied
        response = await handler(request)
        return response

    def _check_pod_auth(self, header: str | None) -> web.Response | None:
        if header is None:
            return _unauthorized('Basic realm="Oracle EPM Cloud"')
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return _unauthorized('Basic realm="Oracle EPM Cloud"')
            if decoded == f"{self.username}:{self.password}":
                return None
            return _unauthorized('Basic realm="Oracle EPM Cloud"')
        if scheme.lower() == "bearer":
            with self._lock:
                token = self._access_tokens.get(value)
            if token is None or token.expires_at < time.time():
                return _unauthorized(
                    'Bearer error="invalid_token", '
                    'error_description="The access token expired"'
                )
            if not token.audience_ok:
                return _unauthorized(
                    'Bearer error="invalid_token", error_description="Token Audience"'
                )
            return None
        return _unauthorized('Basic realm="Oracle EPM Cloud"')

    def _job_for(self, family: str, job_id_text: str) -> FakeJob | None:
        if not job_id_text.lstrip("-").isdigit():
            return None
        if self.on_job_request is not None:
            self.on_job_request()
        with self._lock:
            job = self._jobs.get((family, int(job_id_text)))
            if job is None:
                return None
            job.polls += 1
            return job

    def _current_step(self, job: FakeJob) -> Step:
        with self._lock:
            step = job.steps[job.index]
            if job.advance_on_poll:
                job.index = min(job.index + 1, len(job.steps) - 1)
            return step

    async def _planning_job(self, request: web.Request) -> web.Response:
        app = request.match_info["app"]
        job = self._job_for("planning", request.match_info["job_id"])
        if job is None or job.application != app:
            return _not_found(request.path)
        step = self._current_step(job)
        body: dict[str, Any] = {
            "status": None,
            "details": None,
            "jobId": job.job_id,
            "jobName": job.job_name,
            "descriptiveStatus": None,
            "links": _links(request, job.job_id, with_details=True),
        }
        if isinstance(step, Mapping):
            body.update(step)
        else:
            body["status"] = step[0]
            body["descriptiveStatus"] = step[1]
            body["details"] = step[2] if len(step) > 2 else None
            # The 26.04 update adds a more granular code beside status.
            body["detailedStatus"] = step[0]
        return web.json_response(body)

    async def _di_job(self, request: web.Request) -> web.Response:
        job = self._job_for("data_integration", request.match_info["job_id"])
        if job is None:
            return _not_found(request.path)
        step = self._current_step(job)
        body: dict[str, Any] = {
            "jobId": job.job_id,
            "logFileName": f"outbox/logs/{job.application}_{job.job_id}.log",
            "outputFileName": None,
            "processType": "COMM_LOAD_BALANCES",
            "executedBy": "epm.admin",
            "details": None,
            "links": _links(request, job.job_id, with_details=False),
        }
        if isinstance(step, Mapping):
            body.update(step)
        else:
            if step[0] is not None:
                body["jobStatus"] = step[0]
            body["status"] = step[1]
            body["details"] = step[2] if len(step) > 2 else None
        return web.json_response(body)

    async def _arcs_job(self, request: web.Request) -> web.Response:
        job = self._job_for("arcs", request.match_info["job_id"])
        if job is None:
            return _not_found(request.path)
        step = self._current_step(job)
        body: dict[str, Any] = {
            "type": "ARCS",
            "status": None,
            "details": None,
            "links": _links(request, job.job_id, with_details=False),
            "error": None,
            "items": None,
            "link": None,
        }
        if isinstance(step, Mapping):
            body.update(step)
        else:
            body["status"] = step[0]
            body["details"] = step[1] if len(step) > 1 else None
        return web.json_response(body)

    async def _maintenance_time(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "details": None,
                "status": 0,
                "items": [
                    {"buildVersion": "26.04.12", "amwTime": "02:00", "timeZone": "UTC"}
                ],
                "links": _links(request, None, with_details=False),
            }
        )

    # Identity domain

    def _client_error(
        self, request: web.Request, form: Mapping[str, str]
    ) -> web.Response | None:
        header = request.headers.get("Authorization")
        if self.client_secret is not None:
            expected = f"{self.client_id}:{self.client_secret}"
            if header is None or not header.startswith("Basic "):
                return _oauth_error(
                    401, "invalid_client", "Client authentication failed."
                )
            try:
                decoded = base64.b64decode(header[6:]).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            if decoded != expected:
                return _oauth_error(
                    401, "invalid_client", "Client authentication failed."
                )
            return None
        if form.get("client_id") != self.client_id:
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        return None

    def _issue_tokens(self, *, audience_ok: bool, refresh: bool) -> dict[str, Any]:
        access = f"at-{next(self._counter)}-{secrets.token_urlsafe(12)}"
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        with self._lock:
            self._access_tokens[access] = _AccessToken(
                time.time() + self.expires_in, audience_ok
            )
        if refresh:
            body["refresh_token"] = self.issue_refresh_token()
        return body

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        denied = self._client_error(request, form)
        if denied is not None:
            return denied
        grant = form.get("grant_type")
        if grant == "refresh_token":
            return self._refresh_grant(form.get("refresh_token", ""))
        if grant == "client_credentials":
            if self.client_secret is None:
                return _oauth_error(
                    400,
                    "unauthorized_client",
                    "The client is not authorized to use this grant type.",
                )
            body = self._issue_tokens(
                audience_ok=self.accept_client_credentials, refresh=False
            )
            return web.json_response(body)
        if grant == DEVICE_CODE_GRANT:
            return self._device_grant(form.get("device_code", ""))
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type.")

    def _refresh_grant(self, token: str) -> web.Response:
        with self._lock:
            if token in self._consumed:
                return _oauth_error(
                    400, "invalid_grant", "The token has already been consumed"
                )
            if token in self._expired:
                return _oauth_error(
                    400,
                    "invalid_grant",
                    f"Token is expired for client : {self.client_id}",
                )
            if token not in self._refresh_tokens:
                return _oauth_error(400, "invalid_grant", "Invalid refresh token.")
            self._refresh_tokens.discard(token)
            self._consumed.add(token)
        return web.json_response(self._issue_tokens(audience_ok=True, refresh=True))

    def _device_grant(self, device_code: str) -> web.Response:
        with self._lock:
            device = self._devices.get(device_code)
            if device is None:
                return _oauth_error(400, "invalid_grant", "Invalid device code.")
            if device.expires_at < time.time():
                return _oauth_error(400, "expired_token", "The device code expired.")
            if device.approved is False:
                del self._devices[device_code]
                return _oauth_error(400, "access_denied", "The user denied access.")
            if device.approved is None:
                if self.slow_down_polls > 0:
                    self.slow_down_polls -= 1
                    return _oauth_error(400, "slow_down", "Polling too fast.")
                return _oauth_error(
                    400, "authorization_pending", "Authorization is pending."
                )
            del self._devices[device_code]
            refresh = "offline_access" in device.scope.split()
        return web.json_response(self._issue_tokens(audience_ok=True, refresh=refresh))

    async def _device(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        denied = self._client_error(request, form)
        if denied is not None:
            return denied
        if form.get("response_type") != "device_code":
            return _oauth_error(
                400, "invalid_request", "response_type must be device_code."
            )
        device_code = f"dc-{secrets.token_urlsafe(16)}"
        user_code = f"{secrets.randbelow(10**8):08d}"
        with self._lock:
            self._devices[device_code] = _Device(
                user_code=user_code,
                scope=form.get("scope", ""),
                expires_at=time.time() + self.device_expires_in,
            )
        return web.json_response(
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": f"{self.url}/ui/v1/device",
                "expires_in": self.device_expires_in,
                "interval": self.device_interval,
            }
        )


def _describe_auth(header: str | None) -> tuple[str | None, str | None]:
    if header is None:
        return None, None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return scheme, None
    try:
        decoded = base64.b64decode(value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return scheme, None
    return scheme, decoded.partition(":")[0]


def _unauthorized(www_authenticate: str) -> web.Response:
    return web.Response(
        status=401,
        text=json.dumps({"detail": "Unauthorized", "status": 401}),
        content_type="application/json",
        headers={"WWW-Authenticate": www_authenticate},
    )


def _not_found(path: str) -> web.Response:
    return web.json_response(
        {"detail": f"Resource {path} was not found", "status": 404}, status=404
    )


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description}, status=status
    )


def _links(
    request: web.Request, job_id: int | None, *, with_details: bool
) -> list[dict[str, str]]:
    href = f"http://{request.host}{request.path}"
    links = [{"rel": "self", "href": href, "action": "GET"}]
    if with_details and job_id is not None:
        links.append({"rel": "job-details", "href": f"{href}/details", "action": "GET"})
    return links
