"""The ``epm`` block of an app in the apps config: which pod and application to poll."""

from __future__ import annotations

import ipaddress
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator

Product = Literal["planning", "fccs", "tax", "freeform", "data_integration", "arcs"]
PRODUCTS: tuple[str, ...] = get_args(Product)

# Products served by the Planning REST API (HyperionPlanning/rest/v3).
PLANNING_FAMILY: frozenset[str] = frozenset({"planning", "fccs", "tax", "freeform"})


def is_loopback_host(host: str) -> bool:
    """Return True for localhost, 127.0.0.0/8 and ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_service_url(
    field: str, value: str, example: str = "the pod base URL https://<pod host>"
) -> str:
    """Validate an EPM or identity-domain URL and return it without a trailing slash.

    https is required; plain http is accepted only for loopback hosts, which is how
    tests reach their fake servers. Raises ValueError naming the field, the value
    and the fix, with ``example`` as the expected form.
    """
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{field}: {value!r} is not an absolute URL; use {example}")
    if parts.username is not None or parts.password is not None:
        # The value is not repeated: it contains a password.
        raise ValueError(
            f"{field}: the URL of host {parts.hostname!r} must not contain "
            "credentials; remove the user:password@ part and set them in the EPM_* "
            "settings"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"{field}: {value!r} must not contain a query or fragment; "
            "remove everything from '?' or '#'"
        )
    if scheme == "http" and not is_loopback_host(parts.hostname):
        https_form = "https" + value.strip()[len("http") :]
        raise ValueError(
            f"{field}: {value!r} must use https (plain http is accepted only for "
            f"loopback hosts 127.0.0.0/8, ::1 and localhost); use {https_form!r}"
        )
    return value.strip().rstrip("/")


class EpmBlock(BaseModel):
    """Per-app pull-mode settings: the pod base URL, the product and application."""

    # Errors name the value themselves; pydantic's copy could show a password.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str
    product: Product
    application: str

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_service_url("epm.url", value)

    @field_validator("application")
    @classmethod
    def _check_application(cls, value: str) -> str:
        name = value.strip()
        if not name:
            raise ValueError(
                "epm.application: must not be empty; "
                "set it to the EPM application name, for example 'Vision'"
            )
        return name


class EpmDomainOverride(BaseModel):
    """Per-domain change to the app's ``epm`` block.

    Data Integration jobs run in Planning pods, so a domain loaded by Data
    Integration sets ``product`` to ``data_integration`` under a Planning app.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    product: Product | None = None


def effective_product(
    block: EpmBlock, override: EpmDomainOverride | None = None
) -> Product:
    """Return the product whose job API a domain's jobs are polled through."""
    if override is not None and override.product is not None:
        return override.product
    return block.product
