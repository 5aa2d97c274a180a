"""docs/openapi.yaml parses, its schemas are valid, and it lists exactly the routes
the server has."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from bot.service import Service
from store.models import STATUS_ALIASES
from tests.openapi_spec import SPEC_PATH, documented_routes, load_spec, resolve


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def test_openapi_file_is_version_3_1(spec: dict[str, Any]) -> None:
    assert str(spec["openapi"]).startswith("3.1.")


def test_openapi_refs_all_resolve(spec: dict[str, Any]) -> None:
    broken = []
    stack: list[Any] = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolve(spec, ref)
                except KeyError:
                    broken.append(ref)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert broken == [], f"{SPEC_PATH} has $refs to nothing"


def test_openapi_schemas_are_valid_json_schema(spec: dict[str, Any]) -> None:
    for name, schema in spec["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            pytest.fail(f"schema {name} is invalid: {exc.message}")


def test_openapi_operations_all_have_responses(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation.get("responses"), f"{method.upper()} {path}"


def test_openapi_api_operations_document_401(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            assert "401" in operation["responses"], f"{method.upper()} {path}"


def test_openapi_status_lists_every_spelling(spec: dict[str, Any]) -> None:
    status = spec["components"]["schemas"]["StatusUpdate"]["properties"]["status"]
    described = " ".join(status["description"].split()).casefold()

    missing = [s for s in STATUS_ALIASES if s not in described]

    assert missing == [], "status spellings the StatusUpdate schema does not list"


def _required(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return _required(spec, resolve(spec, schema["$ref"]))
    names = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        names |= _required(spec, part)
    return names


def test_openapi_api_answers_all_have_ok(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            response = operation["responses"]["200"]
            schema = response["content"]["application/json"]["schema"]
            assert "ok" in _required(spec, schema), f"{method.upper()} {path}"


def server_routes(service: Service) -> set[tuple[str, str]]:
    routes = set()
    for route in service.web_app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        path = resource.canonical
        # Slack's own requests (HTTP mode) follow Slack's protocol, not this API.
        if path.startswith("/slack/"):
            continue
        routes.add((route.method, path))
    return routes


async def test_openapi_lists_every_server_route(
    service: Service, spec: dict[str, Any]
) -> None:
    missing = server_routes(service) - documented_routes(spec)
    assert missing == set(), f"routes the server has but {SPEC_PATH} lacks"


async def test_openapi_lists_no_route_the_server_lacks(
    service: Service, spec: dict[str, Any]
) -> None:
    extra = documented_routes(spec) - server_routes(service)
    assert extra == set(), f"routes in {SPEC_PATH} that the server does not have"
