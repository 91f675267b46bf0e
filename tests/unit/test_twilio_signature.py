"""X-Twilio-Signature: the SDK's published vectors and agreement with the SDK itself."""

from __future__ import annotations

import random
import string
from urllib.parse import urlparse

import pytest
from twilio.request_validator import RequestValidator

from shared.twilio_signature import body_sha256, compute_signature, string_to_sign, validate_signature

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
JSON_BODY = '{"property": "value", "boolean": true}'
JSON_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


def test_string_to_sign_is_sorted_concatenation() -> None:
    assert string_to_sign(URL, PARAMS) == (
        "https://mycompany.com/myapp.php?foo=1&bar=2"
        "CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212"
    )


def test_basic_vector() -> None:
    assert compute_signature(TOKEN, URL, PARAMS) == EXPECTED
    assert validate_signature(TOKEN, URL, PARAMS, EXPECTED)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
        ("http://mycompany.com:80/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
    ],
)
def test_port_vectors(url: str, expected: str) -> None:
    assert compute_signature(TOKEN, url, PARAMS) == expected
    assert validate_signature(TOKEN, url, PARAMS, expected)


def test_validation_removes_port_on_https() -> None:
    assert validate_signature(TOKEN, "https://mycompany.com:1234/myapp.php?foo=1&bar=2", PARAMS, EXPECTED)


def test_validation_removes_port_on_http() -> None:
    signature = compute_signature(TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", PARAMS)
    assert validate_signature(TOKEN, "http://mycompany.com:1234/myapp.php?foo=1&bar=2", PARAMS, signature)


def test_validation_adds_port_on_https() -> None:
    assert validate_signature(TOKEN, URL, PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")


def test_validation_adds_port_on_http() -> None:
    assert validate_signature(
        TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4="
    )


def test_multi_value_params_are_deduplicated_and_sorted() -> None:
    params = {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234", "1234"]}
    assert compute_signature(TOKEN, URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert validate_signature(TOKEN, URL, params, "IK+Dwps556ElfBT0I3Rgjkr1wJU=")


def test_json_body_vector() -> None:
    assert body_sha256(JSON_BODY) == JSON_HASH
    url = f"{URL}&bodySHA256={JSON_HASH}"
    assert compute_signature(TOKEN, url, None) == "a9nBmqA0ju/hNViExpshrM61xv4="
    assert validate_signature(TOKEN, url, JSON_BODY, "a9nBmqA0ju/hNViExpshrM61xv4=")


def test_json_body_tampered_fails() -> None:
    url = f"{URL}&bodySHA256={JSON_HASH}"
    assert not validate_signature(
        TOKEN, url, JSON_BODY.replace("true", "false"), "a9nBmqA0ju/hNViExpshrM61xv4="
    )


def test_raw_body_without_hash_is_rejected() -> None:
    assert not validate_signature(TOKEN, URL, JSON_BODY, compute_signature(TOKEN, URL, None))


def test_wrong_token_tampered_param_and_garbage_fail() -> None:
    assert not validate_signature("54321", URL, PARAMS, EXPECTED)
    assert not validate_signature(TOKEN, URL, {**PARAMS, "Digits": "1235"}, EXPECTED)
    assert not validate_signature(TOKEN, URL, PARAMS, "é" * 28)
    assert not validate_signature(TOKEN, "https://mycompany.com:99999999/x", PARAMS, EXPECTED)


def test_empty_params_sign_url_only() -> None:
    assert compute_signature(TOKEN, URL, {}) == compute_signature(TOKEN, URL, None)
    assert validate_signature(TOKEN, URL, None, compute_signature(TOKEN, URL, {}))


class _MultiDict(dict[str, list[str]]):
    """The shape the SDK reads repeated form fields from (Flask/Werkzeug style)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


_ALPHABET = string.ascii_letters + string.digits + " +-_.:/=&?%#" + "éüßçñ€中文日本語😀🚀ا"


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(low, high)))


def _random_url(rng: random.Random) -> str:
    scheme = rng.choice(["http", "https"])
    host = rng.choice(["example.com", "hooks.example.org", "127.0.0.1", "localhost", "api.test"])
    port = rng.choice(["", "", ":80", ":443", ":8080", f":{rng.randint(1, 65535)}"])
    path = "/" + "/".join(
        "".join(rng.choice(string.ascii_letters + "-._~") for _ in range(rng.randint(1, 8)))
        for _ in range(rng.randint(0, 3))
    )
    query = ""
    if rng.random() < 0.5:
        pairs = [
            f"{rng.choice(['a', 'b', 'foo', 'x_y'])}={rng.randint(0, 999)}" for _ in range(rng.randint(1, 3))
        ]
        query = "?" + "&".join(pairs)
    return f"{scheme}://{host}{port}{path}{query}"


def _random_params(rng: random.Random) -> dict[str, str | list[str]]:
    params: dict[str, str | list[str]] = {}
    for _ in range(rng.randint(0, 8)):
        name = _text(rng, 1, 12)
        if rng.random() < 0.25:
            params[name] = [_text(rng, 0, 10) for _ in range(rng.randint(1, 4))]
        else:
            params[name] = _text(rng, 0, 30)
    return params


def _sdk_view(params: dict[str, str | list[str]]) -> _MultiDict:
    return _MultiDict({k: [v] if isinstance(v, str) else list(v) for k, v in params.items()})


def test_agrees_with_official_sdk_on_random_payloads() -> None:
    rng = random.Random(20240601)
    for _ in range(1000):
        token = _text(rng, 8, 32)
        url = _random_url(rng)
        params = _random_params(rng)
        sdk = RequestValidator(token)
        sdk_params = _sdk_view(params)

        ours = compute_signature(token, url, params)
        assert ours == sdk.compute_signature(url, sdk_params), (url, params)
        assert validate_signature(token, url, params, ours)
        assert sdk.validate(url, sdk_params, ours)

        # Whatever the SDK accepts, we accept: cross-check with the other port variant.
        alternate = sdk.compute_signature(_toggle_port(url), sdk_params)
        assert validate_signature(token, url, params, alternate) == sdk.validate(url, sdk_params, alternate)

        if params:
            name = rng.choice(sorted(params))
            tampered = dict(params)
            tampered[name] = "tampered" + _text(rng, 1, 5)
            assert not validate_signature(token, url, tampered, ours)
            assert not sdk.validate(url, _sdk_view(tampered), ours)


def _toggle_port(url: str) -> str:
    parsed = urlparse(url)
    if parsed.port:
        return parsed._replace(netloc=parsed.hostname or "").geturl()
    default = 443 if parsed.scheme == "https" else 80
    return parsed._replace(netloc=f"{parsed.netloc}:{default}").geturl()
