"""``POST /api/v1/watch``: ask pull mode to follow an EPM job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from handlers.validation import ValidationProblem
from handlers.webhook import MAX_STATUS_BYTES, read_json

# watch(app, domain, job_id) starts following a job and returns what it follows.
WatchJob = Callable[[str, str, str], Awaitable[dict[str, Any]]]


class WatchRejected(ValueError):
    """A watch request cannot be followed; ``field`` names the input at fault."""

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class WatchApi:
    def __init__(self, watch: WatchJob | None) -> None:
        self.watch = watch

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/watch", self.post_watch)

    async def post_watch(self, request: web.Request) -> web.StreamResponse:
        payload = await read_json(request, MAX_STATUS_BYTES)
        if not isinstance(payload, dict):
            raise ValidationProblem(
                "invalid_type",
                'send {"app": ..., "domain": ..., "job_id": ...}',
                None,
                payload,
            )
        fields = {}
        for name in ("app", "domain", "job_id"):
            value = payload.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                raise ValidationProblem(
                    "missing_field",
                    f"{name} is missing or not a string: send app, domain and the "
                    "numeric EPM job_id",
                    name,
                    value,
                )
            fields[name] = value.strip()
        if self.watch is None:
            raise ValidationProblem(
                "pull_mode_off",
                "pull mode is off: add an epm block to the app in apps.json and "
                "set EPM credentials (see the README, 'Pull mode')",
                "app",
                fields["app"],
            )
        try:
            watching = await self.watch(
                fields["app"], fields["domain"], fields["job_id"]
            )
        except WatchRejected as exc:
            raise ValidationProblem(
                f"invalid_{exc.field}", str(exc), exc.field, exc.value
            ) from exc
        return web.json_response({"ok": True, "watching": watching})
