"""E.164 normalisation with the tenant's default region."""

from __future__ import annotations

import phonenumbers

WHATSAPP_PREFIX = "whatsapp:"


class InvalidPhone(ValueError):
    pass


def to_e164(raw: str, default_region: str = "US") -> str:
    """Return the E.164 form of ``raw`` or raise InvalidPhone with the reason."""
    text = raw.strip()
    if text.lower().startswith(WHATSAPP_PREFIX):
        text = text[len(WHATSAPP_PREFIX) :]
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"cannot parse phone number {raw!r}: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def to_e164_or_none(raw: str | None, default_region: str = "US") -> str | None:
    if not raw:
        return None
    try:
        return to_e164(raw, default_region)
    except InvalidPhone:
        return None


def whatsapp_address(e164: str) -> str:
    return f"{WHATSAPP_PREFIX}{e164}"


def strip_channel(address: str) -> str:
    return address[len(WHATSAPP_PREFIX) :] if address.startswith(WHATSAPP_PREFIX) else address


def mask(e164: str) -> str:
    """Mask all but the country code start and the last 2 digits, e.g. +1415•••••67."""
    if len(e164) <= 6:
        return e164
    return e164[:4] + "•" * (len(e164) - 6) + e164[-2:]


def is_valid_region(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS
