"""Pull mode: follow watched EPM jobs until they finish, and report status changes.

The poller is wired to the rest of EPMPulse only through callbacks, each of which
may be a plain function or a coroutine function:

- ``on_status(app, domain, job_id, state)`` when a job's mapped status changes;
- ``on_gave_up(app, domain, job_id)`` when a job outlives its max runtime;
- ``on_not_found(app, domain, job_id)`` when the pod returns 404 for a job;
- ``on_maintenance(active)`` when the first pod enters or the last pod leaves the
  daily maintenance window;
- ``on_admin_problem(key, text)`` for authentication problems (``text`` None when
  the problem with that key is cleared).

The watch list is saved to a JSON file after every change, so a restart resumes it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epm.client import EpmClient
from epm.config import PRODUCTS, EpmBlock, Product
from epm.errors import (
    EpmAuthError,
    EpmMaintenance,
    EpmResponseError,
    EpmRetryableError,
    JobNotFound,
)
from epm.status import JobState
from store.files import write_atomic
from store.models import Status
from store.waiting import wait_event

logger = logging.getLogger(__name__)

StatusCallback = Callable[[str, str, str, JobState], Awaitable[None] | None]
JobCallback = Callable[[str, str, str], Awaitable[None] | None]
MaintenanceCallback = Callable[[bool], Awaitable[None] | None]
ProblemCallback = Callable[[str, str | None], Awaitable[None] | None]

STATE_VERSION = 1


@dataclass
class WatchedJob:
    """One followed job. ``started_at`` is the Unix time the watch began."""

    app: str
    domain: str
    job_id: str
    epm: EpmBlock
    product: Product
    max_runtime_seconds: float
    started_at: float
    last_status: Status | None = None
    # Monotonic time of the next poll; not saved.
    next_poll_at: float = field(default=0.0, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "domain": self.domain,
            "job_id": self.job_id,
            "epm": self.epm.model_dump(),
            "product": self.product,
            "max_runtime_seconds": self.max_runtime_seconds,
            "started_at": self.started_at,
            "last_status": None if self.last_status is None else self.last_status.value,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WatchedJob:
        """Rebuild a saved job; raises ValueError, KeyError or TypeError if invalid."""
        product = data["product"]
        if product not in PRODUCTS:
            raise ValueError(f"unknown product {product!r}")
        last = data.get("last_status")
        return cls(
            app=str(data["app"]),
            domain=str(data["domain"]),
            job_id=_check_job_id(data["job_id"]),
            epm=EpmBlock.model_validate(data["epm"]),
            product=product,
            max_runtime_seconds=float(data["max_runtime_seconds"]),
            started_at=float(data["started_at"]),
            last_status=None if last is None else Status(last),
        )


@dataclass
class _PodState:
    blocked_until: float = 0.0
    failures: int = 0
    in_maintenance: bool = False


def _check_job_id(job_id: object) -> str:
    text = str(job_id).strip()
    if not text.isdecimal() or not text.isascii():
        raise ValueError(f"job_id: {job_id!r} is not a numeric EPM job id")
    return text


class JobPoller:
    """Polls the watched jobs every ``poll_seconds`` (with jitter) until they finish.

    A watch is keyed by (app, domain): watching a new job id for a row replaces the
    previous job of that row. Per pod, the poller waits out Retry-After (or backs
    off exponentially up to ``max_backoff_seconds``) after 429/502/503/504 and
    connection errors, retries every ``maintenance_retry_seconds`` during the
    daily maintenance window, and every ``auth_retry_seconds`` after an
    authentication failure. A job that is not finished after its max runtime is
    given up. None of these is reported as a job failure.
    """

    def __init__(
        self,
        client: EpmClient,
        state_path: Path,
        *,
        on_status: StatusCallback,
        on_gave_up: JobCallback | None = None,
        on_not_found: JobCallback | None = None,
        on_maintenance: MaintenanceCallback | None = None,
        on_admin_problem: ProblemCallback | None = None,
        poll_seconds: float = 30.0,
        jitter: float = 0.1,
        maintenance_retry_seconds: float = 120.0,
        auth_retry_seconds: float = 300.0,
        max_backoff_seconds: float = 600.0,
        keep_alive_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._state_path = state_path
        self._on_status = on_status
        self._on_gave_up = on_gave_up
        self._on_not_found = on_not_found
        self._on_maintenance = on_maintenance
        self._on_admin_problem = on_admin_problem
        self.poll_seconds = poll_seconds
        self._jitter = jitter
        self._maintenance_retry = maintenance_retry_seconds
        self._auth_retry = auth_retry_seconds
        self._max_backoff = max_backoff_seconds
        self._keep_alive_seconds = keep_alive_seconds
        self._clock = clock

        self._jobs: dict[tuple[str, str], WatchedJob] = {}
        self._pods: dict[str, _PodState] = {}
        self._problems: dict[str, str] = {}
        self._maintenance_active = False
        self._next_keep_alive = 0.0
        self._keep_alive_problem: str | None = None
        self._wake = asyncio.Event()
        self._save_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # Lifecycle

    async def start(self) -> None:
        """Load the saved watch list and start polling."""
        if self._task is not None:
            return
        for job in await asyncio.to_thread(self._load):
            key = (job.app, job.domain)
            if key in self._jobs:
                continue
            # Spread resumed jobs over one interval instead of polling all at once.
            job.next_poll_at = time.monotonic() + random.uniform(0, self.poll_seconds)
            self._jobs[key] = job
        if self._jobs:
            logger.info("EPM poller resumed %d watched job(s)", len(self._jobs))
        self._task = asyncio.create_task(self._run(), name="epm-poller")

    async def stop(self) -> None:
        """Stop polling; the watch list stays saved for the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    # Watch list

    async def watch(
        self,
        app: str,
        domain: str,
        job_id: str | int,
        epm: EpmBlock,
        product: Product,
        max_runtime_seconds: float,
    ) -> None:
        """Follow a job until it finishes; raises ValueError for a bad id or runtime.

        Watching the job a row already follows changes nothing.
        """
        job_id = _check_job_id(job_id)
        if max_runtime_seconds <= 0:
            raise ValueError(
                f"max_runtime_seconds: {max_runtime_seconds!r} must be above 0"
            )
        key = (app, domain)
        existing = self._jobs.get(key)
        if existing is not None and existing.job_id == job_id:
            return
        if existing is not None:
            logger.info(
                "EPM poller: %s/%s now follows job %s instead of job %s",
                app,
                domain,
                job_id,
                existing.job_id,
            )
        self._jobs[key] = WatchedJob(
            app=app,
            domain=domain,
            job_id=job_id,
            epm=epm,
            product=product,
            max_runtime_seconds=float(max_runtime_seconds),
            started_at=self._clock(),
            next_poll_at=time.monotonic(),
        )
        logger.info(
            "EPM poller: watching %s job %s for %s/%s", product, job_id, app, domain
        )
        await self._save()
        self._wake.set()

    async def unwatch(self, app: str, domain: str) -> bool:
        """Stop following the job of a row; return False when there was none."""
        if self._jobs.pop((app, domain), None) is None:
            return False
        await self._save()
        return True

    def watched(self) -> list[WatchedJob]:
        """Return the followed jobs (a copy of the list)."""
        return list(self._jobs.values())

    # Polling

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._keep_auth_alive()
                await self._poll_due_jobs()
            except Exception:
                logger.exception("EPM poller: polling round failed")
            await wait_event(self._wake, self._seconds_to_next_poll())

    def _seconds_to_next_poll(self) -> float:
        now = time.monotonic()
        delay = self.poll_seconds
        for job in self._jobs.values():
            delay = min(delay, job.next_poll_at - now)
        return max(delay, 0.01)

    async def _poll_due_jobs(self) -> None:
        now = time.monotonic()
        by_pod: dict[str, list[WatchedJob]] = {}
        for job in self._jobs.values():
            if job.next_poll_at <= now:
                by_pod.setdefault(job.epm.url, []).append(job)
        await asyncio.gather(
            *(self._poll_pod(url, jobs) for url, jobs in by_pod.items())
        )

    async def _poll_pod(self, pod_url: str, jobs: list[WatchedJob]) -> None:
        pod = self._pods.setdefault(pod_url, _PodState())
        for job in jobs:
            if self._jobs.get((job.app, job.domain)) is not job:
                continue
            if time.monotonic() < pod.blocked_until:
                if self._past_max_runtime(job):
                    await self._give_up(job)
                else:
                    job.next_poll_at = pod.blocked_until
                continue
            try:
                await self._poll_job(pod_url, pod, job)
            except Exception:
                logger.exception(
                    "EPM poller: polling job %s for %s/%s failed",
                    job.job_id,
                    job.app,
                    job.domain,
                )
                job.next_poll_at = self._next_poll_time()

    async def _poll_job(self, pod_url: str, pod: _PodState, job: WatchedJob) -> None:
        try:
            state = await self._client.get_job_status(job.epm, job.product, job.job_id)
        except JobNotFound as exc:
            await self._pod_succeeded(pod_url, pod)
            logger.warning(
                "EPM poller: dropping job %s of %s/%s: %s",
                job.job_id,
                job.app,
                job.domain,
                exc,
            )
            await self._remove(job)
            await self._call(
                "on_not_found", self._on_not_found, job.app, job.domain, job.job_id
            )
            return
        except EpmMaintenance:
            await self._pod_failed(
                pod_url, pod, job, self._maintenance_retry, maintenance=True
            )
            return
        except EpmAuthError as exc:
            await self._report_problem(exc.key, exc.fix)
            await self._pod_failed(pod_url, pod, job, self._auth_retry)
            return
        except (EpmRetryableError, EpmResponseError) as exc:
            pod.failures += 1
            delay = getattr(exc, "retry_after", None)
            if delay is None:
                delay = min(self.poll_seconds * 2**pod.failures, self._max_backoff)
            logger.warning(
                "EPM poller: %s (%s/%s); next try in %.1f s",
                exc,
                job.app,
                job.domain,
                delay,
            )
            await self._pod_failed(pod_url, pod, job, delay)
            return

        await self._pod_succeeded(pod_url, pod)
        # The row may have moved on to another job while this request ran.
        if self._jobs.get((job.app, job.domain)) is job:
            await self._apply_state(job, state)

    async def _apply_state(self, job: WatchedJob, state: JobState) -> None:
        if state.status != job.last_status:
            delivered = await self._call(
                "on_status", self._on_status, job.app, job.domain, job.job_id, state
            )
            if not delivered:
                # Keep the job, so the next poll delivers the status again.
                job.next_poll_at = self._next_poll_time()
                return
            job.last_status = state.status
            if not state.finished:
                await self._save()

        if state.finished:
            logger.info(
                "EPM poller: job %s of %s/%s finished with %s",
                job.job_id,
                job.app,
                job.domain,
                state.status.value,
            )
            await self._remove(job)
        elif self._past_max_runtime(job):
            await self._give_up(job)
        else:
            job.next_poll_at = self._next_poll_time()

    async def _pod_failed(
        self,
        pod_url: str,
        pod: _PodState,
        job: WatchedJob,
        delay: float,
        *,
        maintenance: bool = False,
    ) -> None:
        pod.blocked_until = time.monotonic() + delay
        if maintenance and not pod.in_maintenance:
            logger.warning("EPM pod %s is in daily maintenance", pod_url)
            pod.in_maintenance = True
            await self._update_maintenance()
        if self._past_max_runtime(job):
            await self._give_up(job)
        else:
            job.next_poll_at = pod.blocked_until

    async def _pod_succeeded(self, pod_url: str, pod: _PodState) -> None:
        pod.failures = 0
        if pod.in_maintenance:
            logger.info("EPM pod %s is back from maintenance", pod_url)
            pod.in_maintenance = False
            await self._update_maintenance()
        # A successful response shows that the credentials work, so identity-domain
        # problems and this pod's problems are over.
        for key in list(self._problems):
            scope = key.partition(":")[2]
            if scope in ("", pod_url):
                await self._report_problem(key, None)

    async def _update_maintenance(self) -> None:
        active = any(pod.in_maintenance for pod in self._pods.values())
        if active != self._maintenance_active:
            self._maintenance_active = active
            await self._call("on_maintenance", self._on_maintenance, active)

    async def _report_problem(self, key: str, text: str | None) -> None:
        if self._problems.get(key) == text:
            return
        if text is None:
            del self._problems[key]
            logger.info("EPM problem %s cleared", key)
        else:
            self._problems[key] = text
            logger.error("EPM problem %s: %s", key, text)
        await self._call("on_admin_problem", self._on_admin_problem, key, text)

    async def _keep_auth_alive(self) -> None:
        now = time.monotonic()
        if now < self._next_keep_alive:
            return
        self._next_keep_alive = now + self._keep_alive_seconds
        try:
            await self._client.keep_auth_alive()
        except EpmAuthError as exc:
            self._keep_alive_problem = exc.key
            await self._report_problem(exc.key, exc.fix)
            return
        except (EpmRetryableError, EpmResponseError) as exc:
            logger.warning(
                "EPM poller: keeping the refresh token alive failed: %s", exc
            )
            # Try again after one poll interval instead of an hour.
            self._next_keep_alive = now + self.poll_seconds
            return
        if self._keep_alive_problem is not None:
            await self._report_problem(self._keep_alive_problem, None)
            self._keep_alive_problem = None

    def _past_max_runtime(self, job: WatchedJob) -> bool:
        return self._clock() - job.started_at > job.max_runtime_seconds

    async def _give_up(self, job: WatchedJob) -> None:
        logger.warning(
            "EPM poller: giving up on job %s of %s/%s after its max runtime of %.0f s",
            job.job_id,
            job.app,
            job.domain,
            job.max_runtime_seconds,
        )
        await self._remove(job)
        await self._call(
            "on_gave_up", self._on_gave_up, job.app, job.domain, job.job_id
        )

    async def _remove(self, job: WatchedJob) -> None:
        key = (job.app, job.domain)
        if self._jobs.get(key) is job:
            del self._jobs[key]
            await self._save()

    def _next_poll_time(self) -> float:
        spread = random.uniform(1 - self._jitter, 1 + self._jitter)
        return time.monotonic() + self.poll_seconds * spread

    async def _call(self, name: str, callback: Any, *args: Any) -> bool:
        """Run a callback, awaiting it if needed; return False if it raised."""
        if callback is None:
            return True
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("EPM poller: %s callback failed for %r", name, args[:3])
            return False
        return True

    # Persistence

    async def _save(self) -> None:
        async with self._save_lock:
            data = {
                "version": STATE_VERSION,
                "jobs": [job.to_json() for job in self._jobs.values()],
            }
            payload = json.dumps(data, indent=2).encode("utf-8")
            try:
                await asyncio.to_thread(self._write, payload)
            except OSError as exc:
                logger.error(
                    "EPM poller: saving the watch list to %s failed: %s",
                    self._state_path,
                    exc,
                )

    def _write(self, payload: bytes) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self._state_path, payload)

    def _load(self) -> list[WatchedJob]:
        try:
            raw = self._state_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            logger.error(
                "EPM poller: reading the watch list %s failed (%s); starting with no "
                "watched jobs",
                self._state_path,
                exc,
            )
            return []
        try:
            entries = json.loads(raw)["jobs"]
            if not isinstance(entries, list):
                raise TypeError("jobs is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            # Keep the invalid file for inspection; the next save replaces it.
            aside = self._state_path.with_name(self._state_path.name + ".invalid")
            logger.error(
                "EPM poller: watch list %s is invalid (%s); copied it to %s and "
                "starting with no watched jobs",
                self._state_path,
                exc,
                aside,
            )
            aside.write_bytes(raw)
            return []

        jobs = []
        for entry in entries:
            try:
                jobs.append(WatchedJob.from_json(entry))
            except (ValueError, KeyError, TypeError) as exc:
                logger.error(
                    "EPM poller: skipping invalid saved job %r: %s", entry, exc
                )
        return jobs
