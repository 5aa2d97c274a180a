"""The EPM webhook API: ``/api/v1/status``, ``/api/v1/status/batch`` and friends.

Every ``/api/`` request is authenticated before its body is read. A 200 on a write
means the update is on disk. Errors are JSON with a stable ``code``, the field, the
value and a fix.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from handlers.auth import Keyring
from handlers.validation import ParsedUpdate, ValidationProblem, parse_update
from store.catalog import Catalog
from store.models import Change, Record, iso
from store.store import StatusStore, StoreUnavailable, TooManyRows

log = logging.getLogger(__name__)

MAX_STATUS_BYTES = 16 * 1024
MAX_BATCH_BYTES = 64 * 1024
MAX_BATCH_UPDATES = 100

KEY_LABEL = web.RequestKey("key_label", str)

_SURROGATE = re.compile("[\ud800-\udfff]")
# The escape that json.loads turns into a surrogate. An ASCII body without one
# has no surrogate; other bytes may decode to one (json.loads uses surrogatepass).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

SyncCanvases = Callable[[], Awaitable[list[dict[str, Any]]]]

# NaN and Infinity are not JSON (RFC 8259), and JavaScript's JSON.parse rejects
# them, so a response that would contain one fails as a 500 instead. One encoder
# for all responses: json.dumps builds a new one for every call with options.
_dumps = json.JSONEncoder(allow_nan=False).encode


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Return a JSON response that is valid JSON: no NaN or Infinity."""
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    value: Any = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    problem = ValidationProblem(code, message, field, value, status)
    return json_response(
        {"ok": False, "error": problem.to_json()}, status=status, headers=headers
    )


def record_json(record: Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "app": record.app,
        "domain": record.domain,
        "status": record.status.value,
        "job_id": record.job_id,
        "message": record.message,
        "timestamp": iso(record.timestamp),
        "received_at": iso(record.received_at),
        "since": iso(record.since),
        "source": record.source,
        "run_first_seen_at": _iso(record.run_first_seen_at),
        "run_started_at": _iso(record.run_started_at),
        "run_finished_at": _iso(record.run_finished_at),
        "run_duration_seconds": record.run_duration_seconds,
    }


def _iso(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


class WebhookApi:
    """The ``/api/v1`` routes. ``catalog`` is a callable so a reload can swap it."""

    def __init__(
        self,
        store: StatusStore,
        keyring: Keyring,
        catalog: Callable[[], Catalog],
        sync_canvases: SyncCanvases,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.catalog = catalog
        self.sync_canvases = sync_canvases
        self.clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/status", self.post_status)
        app.router.add_post("/api/v1/status/batch", self.post_batch)
        app.router.add_get("/api/v1/status", self.get_all)
        app.router.add_get("/api/v1/status/{app}", self.get_app)
        app.router.add_post("/api/v1/canvas/sync", self.post_sync)
        app.router.add_get("/api/v1/history", self.get_history)

    # --- writes ------------------------------------------------------------

    async def post_status(self, request: web.Request) -> web.StreamResponse:
        payload = await read_json(request, MAX_STATUS_BYTES)
        parsed = parse_update(payload, self.catalog(), self.clock())
        changes = await self._apply([parsed])
        return json_response({"ok": True, **_result(parsed, changes[0])})

    async def post_batch(self, request: web.Request) -> web.StreamResponse:
        payload = await read_json(request, MAX_BATCH_BYTES)
        updates = payload.get("updates") if isinstance(payload, dict) else None
        if not isinstance(updates, list) or not updates:
            raise ValidationProblem(
                "invalid_batch",
                'send {"updates": [...]} with 1 to '
                f"{MAX_BATCH_UPDATES} status objects",
                "updates",
                updates,
            )
        if len(updates) > MAX_BATCH_UPDATES:
            raise ValidationProblem(
                "batch_too_large",
                f"updates has {len(updates)} items; send at most "
                f"{MAX_BATCH_UPDATES} per batch, or split it",
                "updates",
                len(updates),
            )
        received = self.clock()
        catalog = self.catalog()
        parsed = [
            parse_update(item, catalog, received, prefix=f"updates[{index}].")
            for index, item in enumerate(updates)
        ]
        changes = await self._apply(parsed)
        results = [
            _result(item, change) for item, change in zip(parsed, changes, strict=True)
        ]
        ignored = sorted(key for key in payload if key != "updates")
        return json_response(
            {"ok": True, "results": results, "ignored_fields": ignored}
        )

    async def _apply(self, parsed: list[ParsedUpdate]) -> list[Change]:
        try:
            return await self.store.apply([item.update for item in parsed])
        except TooManyRows as exc:
            raise ValidationProblem(
                "too_many_rows", str(exc), "app", f"{exc.app}/{exc.domain}"
            ) from exc
        except StoreUnavailable as exc:
            raise ValidationProblem(
                "store_unavailable",
                "the update was not stored because the data directory cannot be "
                "written; retry later (the server log has the cause)",
                status=503,
            ) from exc

    async def post_sync(self, request: web.Request) -> web.StreamResponse:
        results = await self.sync_canvases()
        return json_response({"ok": True, "published": results})

    # --- reads -------------------------------------------------------------

    async def get_all(self, request: web.Request) -> web.StreamResponse:
        snapshot = self.store.snapshot
        apps: dict[str, dict[str, Any]] = {}
        for app, domains in snapshot.apps().items():
            apps[app] = {name: record_json(rec) for name, rec in domains.items()}
        return json_response(
            {"ok": True, "apps": apps, "updated_at": _iso(snapshot.updated_at)}
        )

    async def get_app(self, request: web.Request) -> web.StreamResponse:
        name = _stored_form(request.match_info["app"])
        grouped = self.store.snapshot.apps()
        stored = self._stored_app(name, grouped)
        if stored is None:
            known = sorted(set(grouped) | {a.name for a in self.catalog().apps})
            return error_response(
                404,
                "app_not_found",
                f"no status for app {name!r}. Known apps: {', '.join(known) or 'none'}",
                "app",
                name,
            )
        domains = grouped[stored]
        return json_response(
            {
                "ok": True,
                "app": stored,
                "domains": {n: record_json(r) for n, r in domains.items()},
            }
        )

    def _stored_app(self, name: str, grouped: dict[str, Any]) -> str | None:
        """Return the stored app that a request for ``name`` means.

        Without apps.json, "PLANNING" and "Planning" can be two rows, so an exact
        match wins. Then the apps.json spelling, then the first stored app whose
        name matches without regard to case.
        """
        if name in grouped:
            return name
        configured = self.catalog().app(name)
        if configured is not None and configured.name in grouped:
            return configured.name
        folded = name.casefold()
        return next((app for app in grouped if app.casefold() == folded), None)

    async def get_history(self, request: web.Request) -> web.StreamResponse:
        app = _stored_form(request.query.get("app", "")) or None
        domain = _stored_form(request.query.get("domain", "")) or None
        raw_limit = request.query.get("limit", "50")
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise ValidationProblem(
                "invalid_value",
                "limit must be a whole number from 1 to 1000",
                "limit",
                raw_limit,
            )
        if app is not None:
            configured = self.catalog().app(app)
            app = configured.name if configured else app
        events = await self.store.read_history(app, domain, limit)
        return json_response(
            {"ok": True, "events": [event.to_json() for event in events]}
        )


def _stored_form(name: str) -> str:
    # Names are stored trimmed and in NFC (see handlers.validation), so a lookup
    # must use the same form to find them.
    return unicodedata.normalize("NFC", name.strip())


def _result(parsed: ParsedUpdate, change: Change) -> dict[str, Any]:
    result: dict[str, Any] = {
        "record": record_json(change.after),
        "changed": change.changed,
        "ignored_fields": parsed.ignored_fields,
    }
    if parsed.notes:
        result["notes"] = parsed.notes
    if change.before is not None and change.after is change.before:
        if parsed.update.timestamp < change.before.timestamp:
            result.setdefault("notes", []).append(
                "older than the stored status: kept in history only"
            )
    return result


def _too_large(max_bytes: int) -> ValidationProblem:
    # Built only on failure: every request passes through read_json.
    return ValidationProblem(
        "payload_too_large",
        f"the body is larger than {max_bytes // 1024} KB; send smaller messages "
        "or split a batch",
        status=413,
    )


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """Read and parse a JSON body of at most ``max_bytes``; raise ValidationProblem."""
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ValidationProblem(
            "unsupported_media_type",
            f"Content-Type {content_type!r} is not JSON: send "
            "Content-Type: application/json",
            "Content-Type",
            content_type,
            status=415,
        )
    body = await _read_body(request, max_bytes)
    try:
        # What json.loads does with bytes, but with one decoder for all requests:
        # json.loads builds a new decoder for every call that passes hooks.
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        payload = _DECODER.decode(text)
    except _NonFinite as exc:
        raise ValidationProblem(
            "invalid_json", exc.message, value=exc.token, status=400
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationProblem(
            "invalid_json",
            f"the body is not valid JSON ({exc}); check quotes and commas",
            status=400,
        ) from exc
    except (ValueError, RecursionError) as exc:
        # json.loads raises these for an integer of more than 4300 digits (Python's
        # int conversion limit) and for arrays or objects nested too deeply.
        raise ValidationProblem(
            "invalid_json",
            "the body has a number too long or arrays or objects nested too deeply "
            "to read; send status objects as documented",
            status=400,
        ) from exc
    maybe_surrogate = not body.isascii() or _SURROGATE_ESCAPE.search(body)
    if maybe_surrogate and _has_lone_surrogate(payload):
        raise ValidationProblem(
            "invalid_json",
            "the body contains an unpaired surrogate escape such as \\udc80, which "
            "is no Unicode character and cannot be shown or stored as text",
            status=400,
        )
    return payload


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    length = request.content_length
    if length == 0:
        return b""  # aiohttp's empty stream raises on readexactly(0)
    if length is not None:
        if length > max_bytes:
            raise _too_large(max_bytes)
        # aiohttp's parser stops the body at Content-Length, so this is all of it.
        return await request.content.readexactly(length)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)


class _NonFinite(Exception):
    """NaN, Infinity or a number too large for a float in a request body.

    Not a ValueError, so read_json can tell it from the errors of json.loads.
    """

    def __init__(self, token: str, message: str) -> None:
        super().__init__(message)
        self.token = token
        self.message = message


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN, Infinity and -Infinity, which JSON does not have.
    raise _NonFinite(
        name,
        f"the body contains {name}, which is not valid JSON: send a number, a "
        "string or null instead",
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # A literal such as 1e999 is valid JSON but overflows to infinity.
        token = text[:40]
        raise _NonFinite(
            token,
            f"the body contains the number {token}, which is too large for a "
            "64-bit float: send a smaller number or a string",
        )
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _has_lone_surrogate(payload: Any) -> bool:
    """Look for ``\\ud800``-``\\udfff`` escapes, which json.loads accepts alone.

    Iterative, because json.loads accepts nesting deeper than a recursive walk may go.
    """
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False
