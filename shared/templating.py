"""Campaign templates and their shortcodes: validation at campaign creation, rendering per recipient.

A template is either a body text or a Twilio Content template with a variable mapping::

    {"body": "Hi {customer_first_name}, see you on {appointment_date}!"}
    {"content_sid": "HX…", "variables": {"1": "{customer_first_name}", "2": "at {location_name}"}}

Rendering is plain substitution of ``{shortcode}``: no expressions, no code. Anything of the form
``{word}`` must be a known shortcode (an unknown one is an error at creation, never a literal in a
customer's message); other braces are text. A value that is missing has a defined fallback:

=======================================  ==============================================
shortcode                                when the value is missing
=======================================  ==============================================
customer_first_name                      "there" (so "Hi {customer_first_name}" reads "Hi there")
customer_full_name, customer_name        the first and last name joined, else "there"
customer_last_name, customer_email       empty
customer_phone                           always present (the recipient's E.164 number)
appointment_date / _time / _datetime     empty; otherwise in the tenant's timezone and locale
service_name, location_name,             empty
location_address, staff_name,
appointment_status
business_name                            the tenant's name
=======================================  ==============================================

An empty value takes the spaces before it along and runs of spaces collapse to one, so no gap
is left in the text. In Content variables a value that renders empty is left out, so Twilio uses
the template's own default for it.

Dates and times use a small built-in table of formats (no locale library): ``en_US`` gives
"Mar 5, 2025" and "3:30 PM"; other English locales "5 Mar 2025" and "15:30"; German, Polish,
Russian, Turkish and similar "05.03.2025"; French, Spanish, Italian and Portuguese "05/03/2025";
Dutch "05-03-2025"; anything else ISO "2025-03-05". Times outside ``en_US`` use 24 hours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SHORTCODE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
MAX_BODY_CHARS = 1600
# Twilio rejects templates whose substituted parameters and text pass 1024 characters (63021).
MAX_VARIABLE_CHARS = 1024

CUSTOMER_SHORTCODES = frozenset(
    {
        "customer_full_name",
        "customer_first_name",
        "customer_last_name",
        "customer_name",
        "customer_phone",
        "customer_email",
    }
)
APPOINTMENT_SHORTCODES = frozenset(
    {
        "appointment_date",
        "appointment_time",
        "appointment_datetime",
        "service_name",
        "location_name",
        "location_address",
        "staff_name",
        "appointment_status",
    }
)
BUSINESS_SHORTCODES = frozenset({"business_name"})
SHORTCODES = CUSTOMER_SHORTCODES | APPOINTMENT_SHORTCODES | BUSINESS_SHORTCODES

NAME_FALLBACK = "there"

# The longest value each shortcode can take: the maximum lengths the booking API and the tenant
# settings accept (a date or time is at most this long in any supported locale).
LONGEST_VALUE = {
    "customer_first_name": 200,
    "customer_last_name": 200,
    "customer_full_name": 401,
    "customer_name": 401,
    "customer_phone": 16,
    "customer_email": 320,
    "appointment_date": 12,
    "appointment_time": 8,
    "appointment_datetime": 22,
    "service_name": 200,
    "location_name": 200,
    "location_address": 500,
    "staff_name": 200,
    "appointment_status": 64,
    "business_name": 200,
}
# Twilio refuses a body past WhatsApp's 1600 characters with 21617, after the message was sent
# for: the engine checks before it sends.
BODY_TOO_LONG_CODE = 21617
# Twilio's code for a create with neither a body nor media: what a body that renders empty gets.
EMPTY_BODY_CODE = 21619

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DOTTED = ("de", "pl", "ru", "tr", "cs", "sk", "da", "fi", "nb", "no", "uk", "ro", "hu")
_SLASHED = ("fr", "es", "it", "pt", "el", "ca")


@dataclass(frozen=True)
class Template:
    body: str | None = None
    content_sid: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)

    @property
    def shortcodes(self) -> set[str]:
        texts = [self.body] if self.body is not None else list(self.variables.values())
        return {name for text in texts for name in SHORTCODE.findall(text)}


@dataclass(frozen=True)
class RecipientData:
    """What a recipient's message may mention; ``overrides`` (per-number variables of manual and
    test sends) win over the values from the customer and the appointment."""

    phone_e164: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    appointment_starts_at: datetime | None = None
    service_name: str | None = None
    location_name: str | None = None
    location_address: str | None = None
    staff_name: str | None = None
    appointment_status: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TenantStyle:
    name: str
    business_name: str | None = None
    timezone: str = "UTC"
    locale: str = "en_US"


@dataclass(frozen=True)
class RenderedMessage:
    body: str | None = None
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None


def parse_template(template: Mapping[str, Any]) -> Template:
    """The template of a stored campaign (validated when it was created)."""
    return Template(
        body=template.get("body"),
        content_sid=template.get("content_sid"),
        variables=dict(template.get("variables") or {}),
    )


def _shortcode_errors(field_name: str, text: str, appointment_available: bool) -> list[dict[str, str]]:
    errors = []
    for name in SHORTCODE.findall(text):
        if name not in SHORTCODES:
            errors.append({"field": field_name, "message": f"unknown shortcode {{{name}}}"})
        elif name in APPOINTMENT_SHORTCODES and not appointment_available:
            errors.append(
                {
                    "field": field_name,
                    "message": f"shortcode {{{name}}} needs an audience with an appointment",
                }
            )
    return errors


def validate_template(template: object, *, appointment_available: bool) -> list[dict[str, str]]:
    """Field-level errors of a campaign template (empty when it is valid)."""
    if not isinstance(template, Mapping):
        return [{"field": "template", "message": "must be an object with a body or a content_sid"}]
    errors: list[dict[str, str]] = []
    unknown = sorted(set(template) - {"body", "content_sid", "variables"})
    errors.extend({"field": f"template.{key}", "message": "unknown field"} for key in unknown)
    body = template.get("body")
    content_sid = template.get("content_sid")
    variables = template.get("variables")
    if (body is None) == (content_sid is None):
        errors.append({"field": "template", "message": "give exactly one of body and content_sid"})
        return errors
    if body is not None:
        if not isinstance(body, str) or not body.strip():
            errors.append({"field": "template.body", "message": "must be non-empty text"})
        elif len(body) > MAX_BODY_CHARS:
            errors.append({"field": "template.body", "message": f"longer than {MAX_BODY_CHARS} characters"})
        else:
            errors.extend(_shortcode_errors("template.body", body, appointment_available))
        if variables:
            errors.append(
                {"field": "template.variables", "message": "only a content_sid template has variables"}
            )
        return errors
    if not isinstance(content_sid, str) or not CONTENT_SID.match(content_sid):
        errors.append(
            {"field": "template.content_sid", "message": "must look like HX followed by 32 hex digits"}
        )
    if variables is None:
        return errors
    if not isinstance(variables, Mapping):
        errors.append({"field": "template.variables", "message": "must be an object of text values"})
        return errors
    for key, value in variables.items():
        path = f"template.variables.{key}"
        if not isinstance(key, str) or not key.strip():
            errors.append({"field": path, "message": "variable names must be non-empty"})
        elif not isinstance(value, str):
            errors.append({"field": path, "message": "must be text"})
        elif len(value) > MAX_VARIABLE_CHARS:
            errors.append({"field": path, "message": f"longer than {MAX_VARIABLE_CHARS} characters"})
        else:
            errors.extend(_shortcode_errors(path, value, appointment_available))
    return errors


def longest_body(body: str) -> int:
    """How long the body can get once its shortcodes are replaced by the longest values."""
    return len(SHORTCODE.sub("", body)) + sum(
        LONGEST_VALUE.get(name, len(name) + 2) for name in SHORTCODE.findall(body)
    )


# Shortcodes that never render empty: a fallback, the recipient's own number, the tenant's name.
NEVER_EMPTY = frozenset(
    {"customer_first_name", "customer_full_name", "customer_name", "customer_phone", "business_name"}
)


def can_render_empty(template: Template) -> bool:
    """Whether the message can render empty for some recipient: a body whose text around its
    shortcodes is blank and whose shortcodes can all be empty (a Content template never is)."""
    if template.body is None:
        return False
    return not SHORTCODE.sub("", template.body).strip() and not template.shortcodes & NEVER_EMPTY


def can_render_too_long(template: Template) -> bool:
    """Whether the message can pass WhatsApp's limits for some recipient once its shortcodes are
    replaced: the body's 1,600 characters, a Content variable's 1,024."""
    if template.body is not None:
        return longest_body(template.body) > MAX_BODY_CHARS
    return any(longest_body(text) > MAX_VARIABLE_CHARS for text in template.variables.values())


def body_length_errors(template: Mapping[str, Any]) -> list[dict[str, str]]:
    """An error when a body template could render past WhatsApp's limit for some recipient."""
    body = template.get("body")
    if not isinstance(body, str):
        return []
    longest = longest_body(body)
    if longest <= MAX_BODY_CHARS:
        return []
    return [
        {
            "field": "template.body",
            "message": (
                f"with the longest values its shortcodes can take the message is {longest} characters,"
                f" more than WhatsApp's {MAX_BODY_CHARS}; shorten the text or use fewer shortcodes"
            ),
        }
    ]


def rendered_length_errors(message: RenderedMessage, field_name: str) -> list[dict[str, str]]:
    """An error when one recipient's rendered message passes WhatsApp's limits."""
    if message.body is not None and len(message.body) > MAX_BODY_CHARS:
        return [
            {
                "field": field_name,
                "message": f"the message renders to {len(message.body)} characters, past {MAX_BODY_CHARS}",
            }
        ]
    for key, value in (message.content_variables or {}).items():
        if len(value) > MAX_VARIABLE_CHARS:
            return [
                {
                    "field": field_name,
                    "message": f"variable {key} is {len(value)} characters, past {MAX_VARIABLE_CHARS}",
                }
            ]
    return []


def validate_overrides(values: Mapping[str, object], field_name: str) -> list[dict[str, str]]:
    """Per-number variables of a manual send: known shortcodes with text values."""
    errors = []
    for key, value in values.items():
        if key not in SHORTCODES:
            errors.append({"field": f"{field_name}.{key}", "message": f"unknown shortcode {{{key}}}"})
        elif not isinstance(value, str):
            errors.append({"field": f"{field_name}.{key}", "message": "must be text"})
    return errors


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_date(moment: datetime, locale: str) -> str:
    language = locale.split("_")[0].split("-")[0].lower()
    if locale.replace("-", "_") == "en_US":
        return f"{_MONTHS[moment.month - 1]} {moment.day}, {moment.year}"
    if language == "en":
        return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"
    if language in _DOTTED:
        return f"{moment.day:02d}.{moment.month:02d}.{moment.year}"
    if language in _SLASHED:
        return f"{moment.day:02d}/{moment.month:02d}/{moment.year}"
    if language == "nl":
        return f"{moment.day:02d}-{moment.month:02d}-{moment.year}"
    return moment.date().isoformat()


def format_time(moment: datetime, locale: str) -> str:
    if locale.replace("-", "_") == "en_US":
        hour = moment.hour % 12 or 12
        return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
    return f"{moment.hour:02d}:{moment.minute:02d}"


def shortcode_values(recipient: RecipientData, tenant: TenantStyle) -> dict[str, str]:
    """Every shortcode's value for one recipient, fallbacks applied."""
    first = (recipient.first_name or "").strip()
    last = (recipient.last_name or "").strip()
    full = f"{first} {last}".strip()
    values = {
        "customer_first_name": first or NAME_FALLBACK,
        "customer_last_name": last,
        "customer_full_name": full or NAME_FALLBACK,
        "customer_name": full or NAME_FALLBACK,
        "customer_phone": recipient.phone_e164,
        "customer_email": recipient.email or "",
        "appointment_date": "",
        "appointment_time": "",
        "appointment_datetime": "",
        "service_name": recipient.service_name or "",
        "location_name": recipient.location_name or "",
        "location_address": recipient.location_address or "",
        "staff_name": recipient.staff_name or "",
        "appointment_status": recipient.appointment_status or "",
        "business_name": tenant.business_name or tenant.name,
    }
    if recipient.appointment_starts_at is not None:
        local = recipient.appointment_starts_at.astimezone(_zone(tenant.timezone))
        values["appointment_date"] = format_date(local, tenant.locale)
        values["appointment_time"] = format_time(local, tenant.locale)
        values["appointment_datetime"] = f"{values['appointment_date']}, {values['appointment_time']}"
    for key, value in recipient.overrides.items():
        if key in SHORTCODES and isinstance(value, str):
            values[key] = value
    return values


_EMPTY = "\x00"
_EMPTY_WITH_SPACES = re.compile(r"[ \t]*\x00+")
_SPACES = re.compile(r"[ \t]{2,}")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace each shortcode; an empty value takes the spaces before it along, so
    "Hi {first} {last}, …" with no last name reads "Hi Ann, …"."""
    marked = SHORTCODE.sub(lambda match: values.get(match.group(1), match.group(0)) or _EMPTY, text)
    return _SPACES.sub(" ", _EMPTY_WITH_SPACES.sub("", marked)).strip()


def render(template: Template, recipient: RecipientData, tenant: TenantStyle) -> RenderedMessage:
    values = shortcode_values(recipient, tenant)
    if template.body is not None:
        return RenderedMessage(body=substitute(template.body, values))
    variables = {}
    for key, text in template.variables.items():
        value = substitute(text, values)
        if value:
            variables[key] = value
    return RenderedMessage(content_sid=template.content_sid, content_variables=variables)
