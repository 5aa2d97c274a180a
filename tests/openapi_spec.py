"""Read docs/openapi.yaml and check responses against the schemas it documents."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
_SPEC_URI = "urn:epmpulse:openapi"
_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


@cache
def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return spec


def resolve(spec: dict[str, Any], ref: str) -> Any:
    """Return the node a local ``#/...`` reference points to; KeyError if none."""
    if not ref.startswith("#/"):
        raise KeyError(ref)
    node: Any = spec
    for part in _pointer_parts(ref[1:]):
        node = node[part]
    return node


def documented_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in _METHODS
    }


def _pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


@cache
def _registry() -> Registry:
    resource = Resource(contents=load_spec(), specification=DRAFT202012)
    return Registry().with_resource(_SPEC_URI, resource)


def response_problems(method: str, path: str, status: int, body: Any) -> list[str]:
    """Return why a JSON response breaks the spec of ``method path`` (a template
    such as ``/api/v1/status/{app}``); an empty list when it conforms."""
    spec = load_spec()
    operation = spec["paths"].get(path, {}).get(method.lower())
    if operation is None:
        return [f"{method} {path} is not documented"]
    response = operation["responses"].get(str(status))
    if response is None:
        return [f"{method} {path} answered {status}, which is not documented"]
    if "$ref" in response:
        pointer = response["$ref"][1:]
    else:
        pointer = f"/paths/{_escape(path)}/{method.lower()}/responses/{status}"
    content = resolve(spec, "#" + pointer).get("content", {})
    if "application/json" not in content:
        return [f"{method} {path} {status} is documented without a JSON body"]
    schema_ref = f"{_SPEC_URI}#{pointer}/content/application~1json/schema"
    validator = jsonschema.Draft202012Validator(
        {"$ref": schema_ref}, registry=_registry()
    )
    return [
        f"{method} {path} {status}: {error.json_path}: {error.message}"
        for error in validator.iter_errors(body)
    ]


def error_problems(body: Any) -> list[str]:
    """Return why a body is not the documented Error object."""
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"{_SPEC_URI}#/components/schemas/Error"}, registry=_registry()
    )
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(body)]
