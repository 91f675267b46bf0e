"""The two inputs of a webhook's signature check: the URL Twilio signed and the POSTed params.

Behind a proxy the URL the tracker sees is not the one Twilio requested, so the signed URL is
rebuilt from the configured public base URL, the request path as it came on the wire (not
percent-decoded) and the query string.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, unquote

from shared.twilio_signature import compute_signature, validate_signature

FormParams = dict[str, str | list[str]]


def public_url(public_base_url: str, raw_path: bytes, query_string: bytes) -> str:
    url = public_base_url.rstrip("/") + raw_path.decode("latin-1")
    if query_string:
        url += "?" + query_string.decode("latin-1")
    return url


def parse_form(body: bytes) -> FormParams:
    """Form fields in the shape the signature needs: a repeated name keeps all its values.

    The result is exactly ``parse_qsl(body.decode(errors="replace"), keep_blank_values=True)``
    grouped by name. Twilio percent-encodes everything outside ASCII, so the fast path handles
    ASCII bodies; anything else goes through ``parse_qsl`` itself.
    """
    if not body.isascii():
        decoded = body.decode("utf-8", errors="replace")
        return _grouped(parse_qsl(decoded, keep_blank_values=True, errors="replace"))
    pairs: list[tuple[str, str]] = []
    for field in body.decode("ascii").split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in name or "+" in name:
            name = _unquote_plus(name)
        if "%" in value or "+" in value:
            value = _unquote_plus(value)
        pairs.append((name, value))
    params: FormParams = dict(pairs)
    if len(params) < len(pairs):
        return _grouped(pairs)
    return params


def _grouped(pairs: list[tuple[str, str]]) -> FormParams:
    params: FormParams = {}
    for name, value in pairs:
        existing = params.get(name)
        if existing is None:
            params[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            params[name] = [existing, value]
    return params


def _unquote_plus(text: str) -> str:
    """``urllib.parse.unquote(text.replace("+", " "))`` for ASCII ``text``, in C calls only.

    Each ``%XX`` becomes ``\\xXX`` for the ``unicode_escape`` codec (backslashes already there
    are escaped first), which yields the escaped bytes as code points 0-255; those are then read
    as UTF-8 with replacement, as ``unquote`` does. A ``%`` not followed by two hex digits makes
    the codec fail, and ``unquote`` (which keeps such a ``%`` as it is) takes over.
    """
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    escaped = text.replace("\\", "\\\\").replace("%", "\\x").encode("ascii")
    try:
        raw = escaped.decode("unicode_escape")
    except UnicodeDecodeError:
        return unquote(text)
    return raw.encode("latin-1").decode("utf-8", errors="replace")


def single_values(params: FormParams) -> dict[str, str]:
    """One value per name (the first) for the event payload; repeats never occur in the fields
    the tracker reads, and the signature has already covered all of them."""
    return {name: value if isinstance(value, str) else value[0] for name, value in params.items()}


def signature_holds(auth_token: str, url: str, params: FormParams, signature: str) -> bool:
    """Twilio's check (both port forms of the URL), trying the URL as rebuilt first.

    The rebuilt URL is always one of the two forms Twilio's validator tries, and the one Twilio
    signs in the common case, so checking it first usually costs one HMAC instead of two.
    """
    exact = compute_signature(auth_token, url, params)
    if hmac.compare_digest(exact.encode(), signature.encode("utf-8", "replace")):
        return True
    return validate_signature(auth_token, url, params, signature)
