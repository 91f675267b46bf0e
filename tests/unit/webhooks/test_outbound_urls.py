"""Which URLs may receive webhook deliveries, and which addresses a delivery may connect to."""

from __future__ import annotations

import pytest

from shared.url_checks import is_public_address, webhook_url_reason


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "https://user:pw@example.com/x",
        "https:///x",
        "https://example.com/x#frag",
        "https://example.com:99999/x",
        "not a url",
    ],
)
def test_urls_that_are_never_endpoints_are_refused_in_every_environment(url: str) -> None:
    assert webhook_url_reason(url, strict=False) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
        "https://internal/hook",
    ],
)
def test_strict_environments_refuse_plain_http_and_private_hosts(url: str) -> None:
    assert webhook_url_reason(url, strict=True) is not None
    assert webhook_url_reason(url, strict=False) is None


def test_a_public_https_url_is_accepted_everywhere() -> None:
    assert webhook_url_reason("https://hooks.example.com/wce?x=1", strict=True) is None


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1::1", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("192.168.1.1", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_only_public_addresses_may_be_connected_to(address: str, public: bool) -> None:
    assert is_public_address(address) is public
