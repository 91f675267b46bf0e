"""The two inputs of a webhook's signature check: the URL Twilio signed and the POSTed params.

Behind a proxy the URL the tracker sees is not the one Twilio requested, so the signed URL is
rebuilt from the configured public base URL, the request path as it came on the wire (not
percent-decoded) and the query string.
"""

from __future__ import annotations

import hmac

from shared.forms import form_pairs
from shared.twilio_signature import compute_signature, validate_signature

FormParams = dict[str, str | list[str]]


def public_url(public_base_url: str, raw_path: bytes, query_string: bytes) -> str:
    url = public_base_url.rstrip("/") + raw_path.decode("latin-1")
    if query_string:
        url += "?" + query_string.decode("latin-1")
    return url


def parse_form(body: bytes) -> FormParams:
    """Form fields in the shape the signature needs: a repeated name keeps all its values."""
    pairs = form_pairs(body)
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
