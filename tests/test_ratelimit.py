"""Per-key rate limits and the /metrics endpoint."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bot.service import Service
from handlers.middleware import RejectionLog
from handlers.ratelimit import RateLimit, RateLimiter, parse_rate_limit
from tests.conftest import API_KEY, ApiClient

OTHER_KEY = "second-key-0123456789abcdef"
ROW = {"app": "Planning", "domain": "Actual", "status": "Loading"}


@pytest.mark.parametrize(
    ("text", "amount", "period"),
    [
        ("1200 per minute", 1200, 60.0),
        ("20/second", 20, 1.0),
        ("5 per hours", 5, 3600.0),
        (" 1 PER DAY ", 1, 86400.0),
    ],
)
def test_parse_rate_limit_accepts_guide_format(
    text: str, amount: int, period: float
) -> None:
    limit = parse_rate_limit(text)

    assert limit.amount == amount
    assert limit.period == period


@pytest.mark.parametrize("text", ["", "fast", "0 per minute", "10 per fortnight"])
def test_parse_rate_limit_rejects_with_fix(text: str) -> None:
    with pytest.raises(ValueError, match="per minute"):
        parse_rate_limit(text, "EPMPULSE_RATE_LIMIT_POST")


def test_bucket_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(2, 60.0), clock=lambda: now[0])

    assert limiter.acquire("k") is None
    assert limiter.acquire("k") is None
    wait = limiter.acquire("k")
    assert wait == pytest.approx(30.0)
    now[0] += 30.0
    assert limiter.acquire("k") is None


def test_bucket_keys_are_independent() -> None:
    limiter = RateLimiter(RateLimit(1, 60.0), clock=lambda: 0.0)

    assert limiter.acquire("a") is None
    assert limiter.acquire("b") is None
    assert limiter.acquire("a") is not None


StartService = Callable[..., Awaitable[Service]]


async def _client(
    start_service: StartService, http: aiohttp.ClientSession, **overrides: Any
) -> tuple[Service, ApiClient]:
    service = await start_service(**overrides)
    return service, ApiClient(http, service.url)


async def test_post_over_limit_gets_429_with_retry_after(
    start_service: StartService, http: aiohttp.ClientSession
) -> None:
    _, api = await _client(
        start_service,
        http,
        api_key=f"{API_KEY},{OTHER_KEY}",
        rate_limit_post="3 per minute",
    )
    statuses = [(await api.post("/api/v1/status", ROW)).status for _ in range(3)]
    limited = await api.post("/api/v1/status", ROW)
    other_key = await api.post("/api/v1/status", ROW, key=OTHER_KEY)
    read = await api.get("/api/v1/status")

    assert statuses == [200, 200, 200]
    assert limited.status == 429
    assert limited.body["error"]["code"] == "rate_limited"
    assert "EPMPULSE_RATE_LIMIT_POST" in limited.body["error"]["message"]
    assert int(limited.headers["Retry-After"]) >= 1
    assert other_key.status == 200
    assert read.status == 200


async def test_repeated_429s_log_one_line(
    start_service: StartService,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, api = await _client(start_service, http, rate_limit_post="1 per minute")
    caplog.set_level(logging.WARNING, logger="handlers.auth")

    statuses = [(await api.post("/api/v1/status", ROW)).status for _ in range(20)]

    limited = [
        r.getMessage() for r in caplog.records if "rate limited" in r.getMessage()
    ]
    assert statuses == [200] + [429] * 19
    assert len(limited) == 1
    assert "(0 more since the last line)" in limited[0]


def test_rejection_log_counts_the_lines_left_out() -> None:
    now = [0.0]
    rejections = RejectionLog(interval=60, clock=lambda: now[0])

    first = rejections.due("POST:a")
    left_out = [rejections.due("POST:a") for _ in range(5)]
    other_key = rejections.due("POST:b")
    now[0] = 61
    after_a_minute = rejections.due("POST:a")

    assert first == 0
    assert left_out == [None] * 5
    assert other_key == 0
    assert after_a_minute == 5


async def test_batch_counts_once(
    start_service: StartService, http: aiohttp.ClientSession
) -> None:
    _, api = await _client(start_service, http, rate_limit_post="1 per minute")
    batch = {"updates": [dict(ROW, domain=f"D{i}") for i in range(50)]}

    first = await api.post("/api/v1/status/batch", batch)
    second = await api.post("/api/v1/status/batch", batch)

    assert first.status == 200
    assert second.status == 429


async def test_get_has_its_own_limit(
    start_service: StartService, http: aiohttp.ClientSession
) -> None:
    _, api = await _client(start_service, http, rate_limit_get="1 per minute")

    assert (await api.get("/api/v1/status")).status == 200
    assert (await api.get("/api/v1/status")).status == 429
    assert (await api.post("/api/v1/status", ROW)).status == 200


async def test_metrics_count_requests_and_updates(
    start_service: StartService, http: aiohttp.ClientSession
) -> None:
    service, api = await _client(start_service, http)
    await api.post("/api/v1/status", ROW)
    await api.post("/api/v1/status", dict(ROW, status="nonsense"))
    await service.store.drain()

    async with http.get(service.url + "/metrics") as response:
        text = await response.text()
        content_type = response.content_type

    assert response.status == 200
    assert content_type == "text/plain"
    assert (
        'epmpulse_http_requests_total{method="POST",route="/api/v1/status",'
        'status="200"} 1.0' in text
    )
    assert 'status="422"} 1.0' in text
    assert 'epmpulse_status_updates_total{changed="true",status="Loading"} 1.0' in text
    assert "epmpulse_store_write_seconds_count" in text
    assert API_KEY not in text
