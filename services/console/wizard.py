"""The campaign wizard's decisions, free of the web framework: the API bodies its form fields
make (audience, template), and each sample recipient's message with its warnings.

The form sends text; the API wants numbers, booleans and lists. A field left empty is left out
of the body, so the API's own defaults apply (a segment's default window, for instance), and a
field that does not parse is passed on as it is so the API's 422 names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.templating import (
    APPOINTMENT_SHORTCODES,
    BUSINESS_SHORTCODES,
    CUSTOMER_SHORTCODES,
    MAX_BODY_CHARS,
    RecipientData,
    TenantStyle,
    body_length_errors,
    parse_template,
    render,
    rendered_length_errors,
    validate_template,
)

SEGMENTS: tuple[tuple[str, str], ...] = (
    ("all_customers", "All customers"),
    ("recent_bookers", "Booked recently"),
    ("upcoming", "Upcoming appointment"),
    ("lapsed", "Lapsed (no visit for a while)"),
    ("first_time", "First-time customers"),
    ("repeat", "Repeat customers"),
    ("cancelled_recent", "Cancelled recently"),
    ("all_appointments", "Everyone with an appointment"),
)
WINDOWED = frozenset({"recent_bookers", "upcoming", "lapsed", "cancelled_recent"})
SHORTCODE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Customer", tuple(sorted(CUSTOMER_SHORTCODES))),
    ("Appointment", tuple(sorted(APPOINTMENT_SHORTCODES))),
    ("Business", tuple(sorted(BUSINESS_SHORTCODES))),
)


def _whole_number(text: str) -> int | str:
    stripped = text.strip()
    return int(stripped) if stripped.isdigit() else stripped


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def audience_body(fields: Mapping[str, str]) -> dict[str, Any]:
    """The API's audience object from the wizard's audience fields."""
    segment = fields.get("segment") or "all_customers"
    body: dict[str, Any] = {"segment": segment}
    if segment in WINDOWED and fields.get("days", "").strip():
        body["days"] = _whole_number(fields["days"])
    if segment == "repeat" and fields.get("min_count", "").strip():
        body["min_count"] = _whole_number(fields["min_count"])
    for name in ("service_ids", "location_ids", "statuses"):
        values = _list(fields.get(name, ""))
        if values:
            body[name] = values
    if fields.get("min_appointments", "").strip():
        body["min_appointments"] = _whole_number(fields["min_appointments"])
    # A checkbox sends nothing when unticked: the form carries a hidden marker so an unticked box
    # means "include suppressed numbers", not "the field was never shown".
    if fields.get("audience_form"):
        body["exclude_suppressed"] = fields.get("exclude_suppressed") == "on"
    return body


def template_body(fields: Mapping[str, str]) -> dict[str, Any]:
    """The API's template object: a Content template with the variables filled in (fields named
    ``variable_<name>``), or a body text."""
    if fields.get("message_kind") == "content" and fields.get("content_sid"):
        variables = {
            name.removeprefix("variable_"): value
            for name, value in fields.items()
            if name.startswith("variable_") and value.strip()
        }
        return {"content_sid": fields["content_sid"], "variables": variables}
    return {"body": fields.get("body", "")}


def schedule_body(fields: Mapping[str, str], default_timezone: str) -> dict[str, Any]:
    """The API's schedule: the local date and time the form's ``datetime-local`` field gives, in
    the zone chosen (the tenant's by default)."""
    return {
        "at": fields.get("schedule_at", "").strip(),
        "timezone": fields.get("schedule_timezone", "").strip() or default_timezone,
    }


DAYS: tuple[tuple[str, str], ...] = (
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
)


def sending_window_body(fields: Mapping[str, str], days: list[str]) -> dict[str, Any]:
    """The API's sending window from the settings form (days ticked, ``HH:MM`` times)."""
    return {
        "days": days,
        "start": fields.get("window_start", "").strip(),
        "end": fields.get("window_end", "").strip(),
        "recipient_timezone": fields.get("window_recipient_timezone") == "on",
    }


@dataclass(frozen=True)
class RenderedSample:
    name: str
    phone: str
    text: str
    length: int
    warnings: list[str]


def _split_name(name: str) -> tuple[str | None, str | None]:
    first, _, last = name.strip().partition(" ")
    return (first or None, last.strip() or None)


def _appointment_names(row: Mapping[str, Any]) -> dict[str, str | None]:
    return {
        name: (str(row[name]) if row.get(name) is not None else None)
        for name in ("service_name", "location_name", "location_address", "staff_name")
    }


# The most services or locations offered as a list to pick from; a tenant with more types ids.
PICKER_MAX = 500


def picked(value: str) -> list[str]:
    """The ids a picker or an ids field holds (the form joins a picker's choices with commas)."""
    return _list(value)


def render_samples(
    template: Mapping[str, Any],
    sample: list[Mapping[str, Any]],
    *,
    style: TenantStyle,
    provides_appointment: bool,
) -> tuple[list[RenderedSample], list[str]]:
    """Each sample recipient's message and its warnings, and the template's own problems.

    The preview's sample carries a recipient's name and masked number and, for the segments
    whose messages refer to an appointment, that appointment's time and its service, location
    and staff names where the booking data has them."""
    problems = [e["message"] for e in validate_template(template, appointment_available=provides_appointment)]
    problems += [e["message"] for e in body_length_errors(template)]
    if problems:
        return [], problems
    parsed = parse_template(template)
    rendered: list[RenderedSample] = []
    for row in sample:
        first, last = _split_name(str(row.get("name") or ""))
        starts = (
            (row.get("appointment_starts_at") or row.get("last_appointment_at"))
            if provides_appointment
            else None
        )
        names = _appointment_names(row) if provides_appointment else {}
        data = RecipientData(
            phone_e164=str(row.get("phone") or ""),
            first_name=first,
            last_name=last,
            appointment_starts_at=datetime.fromisoformat(starts) if isinstance(starts, str) else starts,
            service_name=names.get("service_name"),
            location_name=names.get("location_name"),
            location_address=names.get("location_address"),
            staff_name=names.get("staff_name"),
        )
        message = render(parsed, data, style)
        warnings = [e["message"] for e in rendered_length_errors(message, "template")]
        if message.body is not None:
            text = message.body
            if not text.strip():
                warnings.append("renders empty: WhatsApp refuses an empty message (21619)")
        else:
            text = "; ".join(f"{{{{{k}}}}} = {v}" for k, v in (message.content_variables or {}).items())
        rendered.append(
            RenderedSample(str(row.get("name") or ""), str(row.get("phone") or ""), text, len(text), warnings)
        )
    return rendered, problems


__all__ = [
    "MAX_BODY_CHARS",
    "PICKER_MAX",
    "SEGMENTS",
    "SHORTCODE_GROUPS",
    "audience_body",
    "picked",
    "render_samples",
    "template_body",
]
