"""The per-app ``epm`` block: URL rules, products and domain overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from epm.config import EpmBlock, EpmDomainOverride, effective_product

POD = "https://epm-acme.epm.us-phoenix-1.ocs.oraclecloud.com"


def test_https_url_accepted_and_trailing_slash_removed() -> None:
    block = EpmBlock(url=POD + "/", product="planning", application="Vision")

    assert block.url == POD


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.3.4.5",
        "http://localhost:9000",
        "http://[::1]:9000",
    ],
)
def test_plain_http_accepted_for_loopback(url: str) -> None:
    block = EpmBlock(url=url, product="arcs", application="ARCS")

    assert block.url == url


def test_plain_http_rejected_for_remote_host() -> None:
    with pytest.raises(ValidationError) as caught:
        EpmBlock(url="http://epm.example.com", product="planning", application="V")

    message = str(caught.value)
    assert "epm.url" in message
    assert "'http://epm.example.com'" in message
    assert "'https://epm.example.com'" in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("epm.example.com", "not an absolute URL"),
        ("ftp://epm.example.com", "not an absolute URL"),
        ("https://user:pw@epm.example.com", "credentials"),
        ("https://epm.example.com/?a=1", "query"),
        ("http://10.0.0.1", "must use https"),
        ("http://localhost.example.com", "must use https"),
    ],
)
def test_invalid_urls_rejected(url: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        EpmBlock(url=url, product="planning", application="Vision")


def test_credentials_not_echoed_back() -> None:
    with pytest.raises(ValidationError) as caught:
        EpmBlock(url="https://u:s3cret@x.example.com", product="fccs", application="F")

    assert "remove the user:password@ part" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_unknown_product_rejected() -> None:
    with pytest.raises(ValidationError, match="product"):
        EpmBlock(url=POD, product="edm", application="Vision")  # type: ignore[arg-type]


def test_empty_application_rejected() -> None:
    with pytest.raises(ValidationError, match="epm.application"):
        EpmBlock(url=POD, product="planning", application="  ")


def test_unknown_keys_rejected() -> None:
    with pytest.raises(ValidationError, match="client_secret"):
        EpmBlock.model_validate(
            {
                "url": POD,
                "product": "planning",
                "application": "V",
                "client_secret": "x",
            }
        )


def test_domain_override_changes_product() -> None:
    block = EpmBlock(url=POD, product="planning", application="Vision")

    assert effective_product(block) == "planning"
    assert effective_product(block, EpmDomainOverride()) == "planning"
    assert (
        effective_product(block, EpmDomainOverride(product="data_integration"))
        == "data_integration"
    )
