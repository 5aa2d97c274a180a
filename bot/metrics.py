"""Prometheus metrics for ``GET /metrics``, on a registry of the service's own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "epmpulse_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "epmpulse_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.updates = Counter(
            "epmpulse_status_updates",
            "Status updates stored, by status and whether they changed the row",
            ["status", "changed"],
            registry=r,
        )
        self.store_write_seconds = Histogram(
            "epmpulse_store_write_seconds",
            "Durable store write latency (one write covers a group of updates)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.canvas_publishes = Counter(
            "epmpulse_canvas_publishes",
            "Canvas publishes by board and result",
            ["board", "result"],
            registry=r,
        )
        self.slack_calls = Counter(
            "epmpulse_slack_api_calls",
            "Slack Web API calls by method and result",
            ["method", "result"],
            registry=r,
        )
        self.slack_seconds = Histogram(
            "epmpulse_slack_api_seconds",
            "Slack Web API call latency by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "epmpulse_retries",
            "Retried calls by service and reason",
            ["service", "reason"],
            registry=r,
        )
        self.epm_calls = Counter(
            "epmpulse_epm_api_calls",
            "Oracle EPM REST calls by result",
            ["result"],
            registry=r,
        )
        self.epm_seconds = Histogram(
            "epmpulse_epm_api_seconds",
            "Oracle EPM REST call latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._update_children: dict[tuple[str, bool], Any] = {}
        self.alert_queue_depth = Gauge(
            "epmpulse_alert_queue_depth",
            "Alert messages waiting to be sent",
            registry=r,
        )

    def observe_request(
        self, route: str, method: str, status: int, seconds: float
    ) -> None:
        # labels() takes a lock and builds a key on every call; on the webhook's
        # hot path the children are looked up once and kept.
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.request_seconds.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_update(self, status: str, changed: bool) -> None:
        key = (status, changed)
        child = self._update_children.get(key)
        if child is None:
            child = self.updates.labels(status, str(changed).lower())
            self._update_children[key] = child
        child.inc()

    def observe_publish(self, board: str, ok: bool, seconds: float) -> None:
        self.canvas_publishes.labels(board, "ok" if ok else "error").inc()

    def track_queue_depth(self, depth: Callable[[], float]) -> None:
        self.alert_queue_depth.set_function(depth)

    async def handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        response = web.Response(body=body)
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response


def counted_retry_handlers(metrics: Metrics | None) -> list[Any]:
    """slack_sdk's built-in async retry handlers, counting each retry by reason."""
    from slack_sdk.http_retry.builtin_async_handlers import (
        AsyncConnectionErrorRetryHandler,
        AsyncRateLimitErrorRetryHandler,
        AsyncServerErrorRetryHandler,
    )

    def counted(base: type[Any], reason: str) -> Any:
        class Counted(base):  # type: ignore[misc]
            async def prepare_for_next_attempt_async(self, **kwargs: Any) -> None:
                if metrics is not None:
                    metrics.retries.labels("slack", reason).inc()
                await super().prepare_for_next_attempt_async(**kwargs)

        return Counted(max_retry_count=2)

    return [
        counted(AsyncConnectionErrorRetryHandler, "connection"),
        counted(AsyncRateLimitErrorRetryHandler, "ratelimited"),
        counted(AsyncServerErrorRetryHandler, "server_error"),
    ]


def epm_trace_config(metrics: Metrics) -> Any:
    """Build an aiohttp TraceConfig that times every request of the EPM client (pods
    and the token endpoint) and counts them by HTTP status, or ``error``."""
    import aiohttp

    async def on_start(session: Any, context: Any, params: Any) -> None:
        context.started = time.perf_counter()

    async def on_end(session: Any, context: Any, params: Any) -> None:
        metrics.epm_seconds.observe(time.perf_counter() - context.started)
        metrics.epm_calls.labels(str(params.response.status)).inc()

    async def on_exception(session: Any, context: Any, params: Any) -> None:
        metrics.epm_seconds.observe(time.perf_counter() - context.started)
        metrics.epm_calls.labels("error").inc()

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_exception)
    return trace
