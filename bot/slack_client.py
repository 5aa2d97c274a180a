"""The Slack Web API client of the Slack modes, counted in the service's metrics.

Only the Slack wiring imports this module, so that local mode starts without
loading ``slack_sdk``, whose Web API client is one of the slowest imports of the
service.
"""

from __future__ import annotations

import time
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import Metrics


class MeteredWebClient(AsyncWebClient):
    """AsyncWebClient that counts and times every Web API call.

    Overriding ``api_call`` is the one place every method passes through, retries
    included (slack_sdk retries inside it).
    """

    metrics: Metrics | None = None

    async def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = "error"
        try:
            response = await super().api_call(api_method, *args, **kwargs)
            result = "ok"
            return response
        finally:
            if self.metrics is not None:
                self.metrics.slack_calls.labels(api_method, result).inc()
                self.metrics.slack_seconds.labels(api_method).observe(
                    time.perf_counter() - started
                )
