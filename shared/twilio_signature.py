"""Twilio webhook signatures (``X-Twilio-Signature``).

Mirrors twilio-python's ``RequestValidator`` byte for byte so that a request
the official SDK accepts is accepted here and vice versa, without pulling the
SDK into the runtime: the string to sign is the full URL followed by every
POST parameter name and value (names sorted; repeated values de-duplicated and
sorted), keyed HMAC-SHA1 with the account's Auth Token, base64-encoded.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import ParseResult, parse_qs, urlparse

SIGNATURE_HEADER = "X-Twilio-Signature"

Params = Mapping[str, str | Sequence[str]]

_DEFAULT_PORTS = {"https": 443}
_SHA1_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_FALLBACK_PORT = 80


def string_to_sign(url: str, params: Params | None) -> str:
    """The exact text Twilio feeds to HMAC for ``url`` and ``params``."""
    if not params:
        return url
    # The simulator signs every status callback, so this loop is on a hot path.
    parts = [url]
    append = parts.append
    for name in sorted(params):
        value = params[name]
        # A str is itself a Sequence[str]; it must count as one value, not as characters.
        if isinstance(value, str):
            append(name)
            append(value)
        else:
            for item in sorted(set(value)):
                append(name)
                append(item)
    return "".join(parts)


def compute_signature(auth_token: str, url: str, params: Params | None) -> str:
    """Signature Twilio would put in ``X-Twilio-Signature`` for this request."""
    return sign_string(auth_token, string_to_sign(url, params))


@lru_cache(maxsize=1024)
def _keyed_sha1(auth_token: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-1 states after the HMAC inner and outer key blocks (RFC 2104) for one token."""
    key = auth_token.encode("utf-8")
    if len(key) > _SHA1_BLOCK:
        key = hashlib.sha1(key).digest()
    key = key.ljust(_SHA1_BLOCK, b"\0")
    return hashlib.sha1(key.translate(_IPAD)), hashlib.sha1(key.translate(_OPAD))


def sign_string(auth_token: str, text: str) -> str:
    """Signature of a string to sign built by the caller, exactly as ``string_to_sign`` would."""
    # HMAC-SHA1 from copies of the keyed states: setting up the key for every
    # message cost more than hashing the message itself.
    inner, outer = _keyed_sha1(auth_token)
    inner = inner.copy()
    inner.update(text.encode("utf-8"))
    outer = outer.copy()
    outer.update(inner.digest())
    return binascii.b2a_base64(outer.digest(), newline=False).decode("ascii")


def body_sha256(body: str) -> str:
    """Hex digest Twilio puts in the ``bodySHA256`` query parameter of JSON webhooks."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _without_port(parsed: ParseResult) -> str:
    if not parsed.port:
        return parsed.geturl()
    # Same netloc surgery as the SDK, so exotic netlocs behave identically.
    return parsed._replace(netloc=parsed.netloc.split(":")[0]).geturl()


def _with_port(parsed: ParseResult) -> str:
    if parsed.port:
        return parsed.geturl()
    port = _DEFAULT_PORTS.get(parsed.scheme, _FALLBACK_PORT)
    return parsed._replace(netloc=f"{parsed.netloc}:{port}").geturl()


def _equal(a: str, b: str) -> bool:
    # compare_digest rejects non-ASCII str, and a forged header may contain anything.
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def validate_signature(auth_token: str, url: str, params: Params | str | None, signature: str) -> bool:
    """Whether ``signature`` is a valid Twilio signature for the request.

    ``params`` is the form POST body as a mapping, or, for JSON webhooks whose
    URL carries ``bodySHA256``, the raw body text. Twilio is inconsistent about
    including the default port in the URL it signs, so both variants are tried.
    """
    try:
        parsed = urlparse(url)
        candidates = (_without_port(parsed), _with_port(parsed))
    except ValueError:
        # An unparsable port can never have been signed by Twilio.
        return False

    form: Params | None
    if isinstance(params, str):
        hashes = parse_qs(parsed.query).get("bodySHA256")
        # A raw body is only verifiable through the hash the URL commits to.
        if not hashes or not _equal(body_sha256(params), hashes[0]):
            return False
        form = None
    else:
        form = params

    return any(_equal(compute_signature(auth_token, candidate, form), signature) for candidate in candidates)
