"""The webhook API over HTTP on loopback, against a real store in a temp dir."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from bot.service import Service
from store.models import Status
from store.store import StatusStore
from tests.conftest import API_KEY, ApiClient, StartService, write_apps

STATUS = "/api/v1/status"
BATCH = "/api/v1/status/batch"

APPS = [
    {"name": "Planning", "domains": ["Actual", "Forecast", "Budget"]},
    {"name": "FCCS", "domains": ["Consolidation"]},
]


def body(**fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"app": "Planning", "domain": "Actual", "status": "OK"}
    payload.update(fields)
    return payload


async def stored_status(data_dir: Path, app: str, domain: str) -> Status | None:
    """Read the data file with a second store, as a restart would."""
    reader = StatusStore(data_dir)
    await reader.open()
    await reader.close()
    record = reader.snapshot.get(app, domain)
    return record.status if record else None


@pytest.fixture
async def apps_api(
    start_service: StartService, tmp_path: Path, http: Any
) -> AsyncIterator[ApiClient]:
    apps = write_apps(tmp_path / "apps.json", APPS)
    service = await start_service(apps_config=apps)
    yield ApiClient(http, service.url)


async def test_post_returns_stored_record(api: ApiClient) -> None:
    reply = await api.post(
        STATUS, body(status="success", job_id="42", message="Loaded 1,204 rows")
    )

    assert reply.status == 200
    assert reply.body["ok"] is True
    assert reply.body["changed"] is True
    assert reply.body["ignored_fields"] == []
    record = reply.body["record"]
    assert record["status"] == "OK"
    assert record["job_id"] == "42"
    assert record["message"] == "Loaded 1,204 rows"
    assert record["app"] == "Planning"
    assert datetime.fromisoformat(record["received_at"]).tzinfo is not None
    assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None


async def test_post_is_on_disk_when_answered(api: ApiClient, data_dir: Path) -> None:
    reply = await api.post(STATUS, body(status="failed"))

    assert reply.status == 200
    assert await stored_status(data_dir, "Planning", "Actual") is Status.ERROR


async def test_repeated_update_is_unchanged(api: ApiClient) -> None:
    await api.post(STATUS, body(job_id="1"))
    reply = await api.post(STATUS, body(job_id="1"))

    assert reply.status == 200
    assert reply.body["changed"] is False


async def test_older_update_does_not_roll_back(api: ApiClient) -> None:
    now = datetime.now(UTC)
    await api.post(STATUS, body(status="OK", timestamp=now.isoformat()))
    older = (now - timedelta(minutes=10)).isoformat()

    reply = await api.post(STATUS, body(status="Error", timestamp=older))
    current = await api.get(f"{STATUS}/Planning")

    assert reply.status == 200
    assert reply.body["changed"] is False
    assert any("older" in note for note in reply.body["notes"])
    assert current.body["domains"]["Actual"]["status"] == "OK"


async def test_unknown_fields_are_listed(api: ApiClient) -> None:
    reply = await api.post(STATUS, body(jobId="42", mesage="typo"))

    assert reply.status == 200
    assert reply.body["ignored_fields"] == ["jobId", "mesage"]


async def test_future_timestamp_is_stored_as_received(api: ApiClient) -> None:
    future = datetime.now(UTC) + timedelta(hours=1)

    reply = await api.post(STATUS, body(timestamp=future.isoformat()))

    stored = datetime.fromisoformat(reply.body["record"]["timestamp"])
    assert reply.status == 200
    assert stored < future - timedelta(minutes=30)
    assert stored == datetime.fromisoformat(reply.body["record"]["received_at"])
    assert "future" in " ".join(reply.body["notes"])


async def test_timestamp_without_zone_is_utc(api: ApiClient) -> None:
    reply = await api.post(STATUS, body(timestamp="2026-01-31T16:30:00"))

    stored = datetime.fromisoformat(reply.body["record"]["timestamp"])
    assert stored == datetime(2026, 1, 31, 16, 30, tzinfo=UTC)


async def test_unknown_status_is_422_listing_accepted(api: ApiClient) -> None:
    reply = await api.post(STATUS, body(status="Kaput"))

    assert reply.status == 422
    assert reply.body["ok"] is False
    error = reply.body["error"]
    assert error["code"] == "invalid_status"
    assert error["field"] == "status"
    assert error["value"] == "Kaput"
    assert "Blank, Loading, OK, Warning, Error" in error["message"]


async def test_missing_field_is_422(api: ApiClient) -> None:
    reply = await api.post(STATUS, {"app": "Planning", "status": "OK"})

    assert reply.status == 422
    assert reply.body["error"]["code"] == "missing_field"
    assert reply.body["error"]["field"] == "domain"


async def test_malformed_json_is_400(api: ApiClient) -> None:
    reply = await api.post(
        STATUS,
        data='{"app": "Planning",',
        headers={"Content-Type": "application/json"},
    )

    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_json"


async def test_empty_body_is_400(api: ApiClient) -> None:
    reply = await api.post(
        STATUS, data=b"", headers={"Content-Type": "application/json"}
    )

    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_json"


async def test_deeply_nested_json_is_400(api: ApiClient) -> None:
    reply = await api.post(
        STATUS,
        data="[" * 5000 + "]" * 5000,
        headers={"Content-Type": "application/json"},
    )

    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"app": "Planning", "domain": "\udc80", "status": "OK"}',
        '{"app": "Planning", "domain": "\udc80", "status": "OK"}'.encode(
            "utf-8", "surrogatepass"
        ),
        '{"app": "Planning", "domain": "\ud800", "status": "OK"}'.encode(
            "utf-16-le", "surrogatepass"
        ),
    ],
    ids=["escaped", "utf-8-bytes", "utf-16"],
)
async def test_lone_surrogate_is_400(api: ApiClient, raw: bytes) -> None:
    reply = await api.post(
        STATUS, data=raw, headers={"Content-Type": "application/json"}
    )

    assert reply.status == 400
    assert "unpaired surrogate" in reply.body["error"]["message"]


async def test_non_json_content_type_is_415(api: ApiClient) -> None:
    reply = await api.post(
        STATUS,
        data=json.dumps(body()),
        headers={"Content-Type": "text/plain"},
    )

    assert reply.status == 415
    assert reply.body["error"]["code"] == "unsupported_media_type"


async def test_status_over_16_kb_is_413(api: ApiClient) -> None:
    reply = await api.post(STATUS, body(message="m" * (16 * 1024)))

    assert reply.status == 413
    assert reply.body["error"]["code"] == "payload_too_large"


async def test_chunked_status_over_16_kb_is_413(api: ApiClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        payload = json.dumps(body(message="m" * (20 * 1024))).encode()
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    reply = await api.request(
        "POST",
        STATUS,
        data=chunks(),  # type: ignore[arg-type]
        headers={"Content-Type": "application/json"},
    )

    assert reply.status == 413


async def test_status_under_16_kb_is_accepted(api: ApiClient) -> None:
    reply = await api.post(STATUS, body(message="m" * 1900))

    assert reply.status == 200


async def test_batch_between_16_and_64_kb_is_accepted(api: ApiClient) -> None:
    updates = [body(domain=f"D{i}", message="m" * 1000) for i in range(30)]

    reply = await api.post(BATCH, {"updates": updates})

    assert reply.status == 200
    assert len(reply.body["results"]) == 30


async def test_batch_over_64_kb_is_413(api: ApiClient) -> None:
    updates = [body(domain=f"D{i}", message="m" * 1990) for i in range(35)]

    reply = await api.post(BATCH, {"updates": updates})

    assert reply.status == 413


async def test_batch_returns_one_result_per_update(api: ApiClient) -> None:
    updates = [
        body(domain="Actual", status="running"),
        body(domain="Forecast", status="completed"),
        body(domain="Budget", status="failure", extra=1),
    ]

    reply = await api.post(BATCH, {"updates": updates})

    assert reply.status == 200
    results = reply.body["results"]
    assert [r["record"]["status"] for r in results] == ["Loading", "OK", "Error"]
    assert [r["changed"] for r in results] == [True, True, True]
    assert results[2]["ignored_fields"] == ["updates[2].extra"]


async def test_batch_is_stored_in_one_write(
    service: Service, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real_write = service.store._write

    def counting_write(*args: Any) -> None:
        writes.append(len(args[1]))
        real_write(*args)

    monkeypatch.setattr(service.store, "_write", counting_write)
    updates = [body(domain=f"D{i}") for i in range(100)]

    reply = await api.post(BATCH, {"updates": updates})

    assert reply.status == 200
    # Other parts (alert state) may write meta values; rows go in one write.
    assert [rows for rows in writes if rows] == [100]


async def test_batch_with_one_bad_item_stores_nothing(
    api: ApiClient, data_dir: Path
) -> None:
    updates = [body(domain=f"D{i}") for i in range(5)]
    updates[3]["status"] = "sort of done"

    reply = await api.post(BATCH, {"updates": updates})
    current = await api.get(STATUS)

    assert reply.status == 422
    assert reply.body["error"]["field"] == "updates[3].status"
    assert reply.body["error"]["code"] == "invalid_status"
    assert current.body["apps"] == {}
    assert await stored_status(data_dir, "Planning", "D0") is None


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"updates": []}, "invalid_batch"),
        ({"updates": "x"}, "invalid_batch"),
        ({"update": [body()]}, "invalid_batch"),
        ([body()], "invalid_batch"),
        ({"updates": [body(domain=f"D{i}") for i in range(101)]}, "batch_too_large"),
    ],
)
async def test_invalid_batch_is_422(api: ApiClient, payload: Any, code: str) -> None:
    reply = await api.post(BATCH, payload)

    assert reply.status == 422
    assert reply.body["error"]["code"] == code
    assert reply.body["error"]["field"] == "updates"


async def test_get_all_returns_apps_and_updated_at(api: ApiClient) -> None:
    await api.post(STATUS, body(domain="Actual", status="OK"))
    await api.post(STATUS, body(app="FCCS", domain="Consolidation", status="Loading"))

    reply = await api.get(STATUS)

    assert reply.status == 200
    assert set(reply.body) == {"ok", "apps", "updated_at"}
    assert reply.body["ok"] is True
    assert reply.body["apps"]["Planning"]["Actual"]["status"] == "OK"
    assert reply.body["apps"]["FCCS"]["Consolidation"]["status"] == "Loading"
    assert datetime.fromisoformat(reply.body["updated_at"]).tzinfo is not None


async def test_get_all_on_empty_store(api: ApiClient) -> None:
    reply = await api.get(STATUS)

    assert reply.body == {"ok": True, "apps": {}, "updated_at": None}


async def test_get_app_returns_its_domains(api: ApiClient) -> None:
    await api.post(STATUS, body(domain="Actual"))
    await api.post(STATUS, body(domain="Forecast", status="Error"))

    reply = await api.get(f"{STATUS}/planning")

    assert reply.status == 200
    assert reply.body["ok"] is True
    assert reply.body["app"] == "Planning"
    assert set(reply.body["domains"]) == {"Actual", "Forecast"}


async def test_get_unknown_app_is_404_with_known_apps(api: ApiClient) -> None:
    await api.post(STATUS, body())

    reply = await api.get(f"{STATUS}/HCM")

    assert reply.status == 404
    assert reply.body["error"]["code"] == "app_not_found"
    assert "Planning" in reply.body["error"]["message"]


async def test_unknown_api_path_is_json_404(api: ApiClient) -> None:
    reply = await api.get("/api/v1/nothing")

    assert reply.status == 404
    assert reply.body["ok"] is False
    assert reply.body["error"]["code"] == "not_found"


async def test_health_needs_no_key(api: ApiClient) -> None:
    reply = await api.get("/health", key=None)

    assert reply.status == 200
    assert reply.body["status"] == "healthy"
    assert reply.body["env"] == "development"
    assert reply.body["debug"] is False


async def test_write_failure_is_503(api: ApiClient) -> None:
    def enospc(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # Undone before the service stops, so shutdown can write again.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", enospc)
        reply = await api.post(STATUS, body())
        health = await api.get("/health", key=None)

    assert reply.status == 503
    assert reply.body["error"]["code"] == "store_unavailable"
    assert health.status == 503
    assert health.body["status"] == "unhealthy"


async def test_row_limit_is_422(start_service: StartService, http: Any) -> None:
    service = await start_service(max_rows=1)
    api = ApiClient(http, service.url)
    await api.post(STATUS, body(domain="Actual"))

    reply = await api.post(STATUS, body(domain="Forecast"))

    assert reply.status == 422
    assert reply.body["error"]["code"] == "too_many_rows"


async def test_unknown_app_is_422_with_close_match(apps_api: ApiClient) -> None:
    reply = await apps_api.post(STATUS, body(app="Planing"))

    assert reply.status == 422
    error = reply.body["error"]
    assert error["code"] == "unknown_app"
    assert error["field"] == "app"
    assert "Did you mean 'Planning'?" in error["message"]
    assert "FCCS" in error["message"]


async def test_unknown_domain_is_422_naming_known(apps_api: ApiClient) -> None:
    reply = await apps_api.post(STATUS, body(domain="Forcast"))

    assert reply.status == 422
    assert reply.body["error"]["code"] == "unknown_domain"
    assert "Did you mean 'Forecast'?" in reply.body["error"]["message"]


async def test_unknown_app_creates_no_row(apps_api: ApiClient) -> None:
    await apps_api.post(STATUS, body(app="Planing"))

    reply = await apps_api.get(STATUS)

    assert reply.body["apps"] == {}


async def test_names_resolve_to_configured_spelling(apps_api: ApiClient) -> None:
    reply = await apps_api.post(STATUS, body(app="PLANNING", domain="budget"))
    current = await apps_api.get(STATUS)

    assert reply.status == 200
    assert reply.body["record"]["app"] == "Planning"
    assert reply.body["record"]["domain"] == "Budget"
    assert list(current.body["apps"]) == ["Planning"]
    assert list(current.body["apps"]["Planning"]) == ["Budget"]


async def test_sync_publishes_local_boards(api: ApiClient, data_dir: Path) -> None:
    await api.post(STATUS, body(status="Error", message="rule failed"))

    reply = await api.post("/api/v1/canvas/sync")

    assert reply.status == 200
    boards = {item["board"]: item for item in reply.body["published"]}
    assert boards["main"]["ok"] is True
    main = (data_dir / "canvas" / "main.md").read_text(encoding="utf-8")
    assert "rule failed" in main


async def test_get_app_prefers_exact_match(api: ApiClient) -> None:
    await api.post(STATUS, body(app="Planning", status="OK"))
    await api.post(STATUS, body(app="PLANNING", status="Error"))

    upper = await api.get(f"{STATUS}/PLANNING")
    title = await api.get(f"{STATUS}/Planning")

    assert upper.body["app"] == "PLANNING"
    assert upper.body["domains"]["Actual"]["status"] == "Error"
    assert title.body["app"] == "Planning"
    assert title.body["domains"]["Actual"]["status"] == "OK"


async def test_get_app_without_exact_match_ignores_case(api: ApiClient) -> None:
    await api.post(STATUS, body(app="Planning"))
    await api.post(STATUS, body(app="PLANNING"))

    reply = await api.get(f"{STATUS}/planning")

    assert reply.status == 200
    assert reply.body["app"] == "Planning"


async def test_get_app_uses_configured_spelling(apps_api: ApiClient) -> None:
    await apps_api.post(STATUS, body(app="PLANNING"))

    reply = await apps_api.get(f"{STATUS}/planning")

    assert reply.status == 200
    assert reply.body["ok"] is True
    assert reply.body["app"] == "Planning"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"app": "Plan\u200bning"}, "app"),
        ({"domain": "A\u202eB"}, "domain"),
        ({"job_id": "42\u2060"}, "job_id"),
    ],
)
async def test_invisible_character_is_422(
    api: ApiClient, fields: dict[str, str], field: str
) -> None:
    reply = await api.post(STATUS, body(**fields))
    current = await api.get(STATUS)

    assert reply.status == 422
    error = reply.body["error"]
    assert error["code"] == "invalid_value"
    assert error["field"] == field
    assert error["value"] == fields[field]
    assert "\\u" in error["message"]
    assert "Remove it" in error["message"]
    assert current.body["apps"] == {}


async def test_visually_equal_names_are_one_row(api: ApiClient) -> None:
    await api.post(STATUS, body(app="Cafe\u0301", domain=" Actual"))
    await api.post(STATUS, body(app="Caf\u00e9 ", domain="Actual", status="Error"))

    reply = await api.get(STATUS)

    assert list(reply.body["apps"]) == ["Caf\u00e9"]
    assert list(reply.body["apps"]["Caf\u00e9"]) == ["Actual"]
    assert reply.body["apps"]["Caf\u00e9"]["Actual"]["status"] == "Error"


async def test_epm_status_words_are_stored_canonical(api: ApiClient) -> None:
    words = {
        "D1": ("Cancelled", "Warning"),
        "D2": ("Cancel Pending", "Loading"),
        "D3": ("In Process", "Loading"),
        "D4": ("Completed with warnings", "Warning"),
        "D5": ("Failed with errors", "Error"),
        "D6": ("Completed successfully", "OK"),
        "D7": ("Completed with threshold exceeded", "Warning"),
        "D8": ("Queued", "Blank"),
    }
    updates = [body(domain=d, status=word) for d, (word, _) in words.items()]

    reply = await api.post(BATCH, {"updates": updates})

    assert reply.status == 200
    stored = {
        r["record"]["domain"]: r["record"]["status"] for r in reply.body["results"]
    }
    assert stored == {d: status for d, (_, status) in words.items()}


async def test_unknown_status_lists_common_spellings(api: ApiClient) -> None:
    reply = await api.post(STATUS, body(status="Kaput"))

    message = reply.body["error"]["message"]
    assert "common spellings" in message
    assert "cancelled" in message
    assert "in process" in message


async def test_batch_item_not_object_names_item(api: ApiClient) -> None:
    reply = await api.post(BATCH, {"updates": [body(), 1]})

    assert reply.status == 422
    assert reply.body["error"]["code"] == "invalid_type"
    assert reply.body["error"]["field"] == "updates[1]"
    assert reply.body["error"]["message"].startswith("updates[1] must be")


@pytest.mark.parametrize(
    ("value", "expected"),
    [({"a": 1}, '{"a": 1}'), (["OK"], '["OK"]')],
)
async def test_error_value_of_object_is_json_text(
    api: ApiClient, value: Any, expected: str
) -> None:
    reply = await api.post(STATUS, body(status=value))

    assert reply.status == 422
    assert reply.body["error"]["value"] == expected


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_number_is_400(api: ApiClient, token: str) -> None:
    raw = '{"app": "Planning", "domain": "Actual", "status": "OK", "job_id": %s}'

    reply = await api.post(
        STATUS, data=raw % token, headers={"Content-Type": "application/json"}
    )

    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_json"
    assert token in reply.body["error"]["message"]
    assert reply.body["error"]["value"] == token
    # Raises ValueError when the body held NaN or Infinity.
    json.dumps(reply.body, allow_nan=False)


async def test_job_id_variant_gets_note(api: ApiClient) -> None:
    reply = await api.post(STATUS, body(jobId=4711))

    assert reply.status == 200
    assert reply.body["record"]["job_id"] is None
    assert reply.body["ignored_fields"] == ["jobId"]
    assert "jobId was ignored: did you mean job_id?" in reply.body["notes"][0]


async def test_missing_app_with_variant_says_did_you_mean(api: ApiClient) -> None:
    payload = {"App": "Planning", "domain": "Actual", "status": "OK"}

    reply = await api.post(STATUS, payload)

    assert reply.status == 422
    assert reply.body["error"]["code"] == "missing_field"
    assert reply.body["error"]["field"] == "app"
    assert "did you mean app?" in reply.body["error"]["message"]


async def test_get_app_finds_decomposed_name(api: ApiClient) -> None:
    await api.post(STATUS, body(app="Caf\u00e9"))

    decomposed = quote("Cafe\u0301")

    reply = await api.get(f"{STATUS}/{decomposed}")

    assert reply.status == 200
    assert reply.body["app"] == "Caf\u00e9"


async def test_history_finds_decomposed_name(api: ApiClient) -> None:
    await api.post(STATUS, body(app="Caf\u00e9", domain="R\u00e9sum\u00e9"))
    query = urlencode({"app": "Cafe\u0301", "domain": " Re\u0301sume\u0301"})

    reply = await api.get(f"/api/v1/history?{query}")

    assert reply.status == 200
    assert [event["app"] for event in reply.body["events"]] == ["Caf\u00e9"]


async def test_batch_lists_top_level_unknown_fields(api: ApiClient) -> None:
    reply = await api.post(
        "/api/v1/status/batch",
        {"updates": [body(status="Loading")], "comment": "y", "Updates": []},
    )

    assert reply.status == 200
    assert reply.body["ignored_fields"] == ["Updates", "comment"]
    assert reply.body["results"][0]["ignored_fields"] == []


async def test_wrong_method_keeps_allow_header(api: ApiClient) -> None:
    reply = await api.request("DELETE", "/api/v1/status")

    assert reply.status == 405
    assert reply.body["error"]["code"] == "http_error"
    assert "POST" in reply.headers["Allow"]


async def test_client_gone_mid_body_is_499(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    host, port = api.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/v1/status HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\n"
        b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
        b'Content-Length: 100\r\n\r\n{"app": "Plan'
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the server is now waiting for the rest
    writer.close()
    await writer.wait_closed()

    for _ in range(100):
        if "status=499" in caplog.text:
            break
        await asyncio.sleep(0.02)
    assert "path=/api/v1/status status=499" in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert (await api.post("/api/v1/status", body(status="OK"))).status == 200
