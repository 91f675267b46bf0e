"""Shortcode validation at campaign creation and rendering per recipient with fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.templating import (
    RecipientData,
    Template,
    TenantStyle,
    can_render_empty,
    can_render_too_long,
    format_date,
    format_time,
    parse_template,
    render,
    validate_overrides,
    validate_template,
)

SID = "HX" + "a" * 32
TENANT = TenantStyle(name="Glow Salon", timezone="Europe/Berlin", locale="de_DE")
ANN = RecipientData(
    phone_e164="+4915112345678",
    first_name="Ann",
    last_name="Lee",
    email="ann@example.com",
    appointment_starts_at=datetime(2025, 3, 5, 14, 30, tzinfo=UTC),
    service_name="Haircut",
    location_name="Mitte",
    location_address="Torstr. 1",
    staff_name="Kim",
    appointment_status="approved",
)


def test_a_valid_body_template_has_no_errors() -> None:
    assert (
        validate_template(
            {"body": "Hi {customer_first_name} from {business_name}"}, appointment_available=False
        )
        == []
    )


def test_an_unknown_shortcode_is_a_field_error() -> None:
    # Given a body with a typo'd shortcode / When validated
    errors = validate_template({"body": "Hi {customer_frist_name}"}, appointment_available=True)
    # Then the error names the field and the shortcode
    assert errors == [{"field": "template.body", "message": "unknown shortcode {customer_frist_name}"}]


def test_appointment_shortcodes_need_an_audience_with_appointments() -> None:
    errors = validate_template({"body": "See you {appointment_date}"}, appointment_available=False)
    assert [e["field"] for e in errors] == ["template.body"]
    assert "appointment" in errors[0]["message"]
    assert validate_template({"body": "See you {appointment_date}"}, appointment_available=True) == []


def test_content_templates_validate_each_variable() -> None:
    # Given a content template with one good and one unknown shortcode
    template = {"content_sid": SID, "variables": {"1": "{customer_first_name}", "2": "{nope}"}}
    # When validated / Then only the bad variable is reported
    assert validate_template(template, appointment_available=False) == [
        {"field": "template.variables.2", "message": "unknown shortcode {nope}"}
    ]


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({}, "template"),
        ({"body": "x", "content_sid": SID}, "template"),
        ({"body": "   "}, "template.body"),
        ({"body": "x" * 1601}, "template.body"),
        ({"content_sid": "HX123"}, "template.content_sid"),
        ({"content_sid": SID, "variables": {"1": 5}}, "template.variables.1"),
        ({"content_sid": SID, "variables": ["a"]}, "template.variables"),
        ({"body": "x", "variables": {"1": "a"}}, "template.variables"),
        ({"body": "x", "colour": "red"}, "template.colour"),
        ("just text", "template"),
    ],
)
def test_malformed_templates_are_rejected_with_the_field(template: object, field: str) -> None:
    errors = validate_template(template, appointment_available=True)
    assert field in [e["field"] for e in errors]


def test_literal_braces_that_are_not_shortcodes_are_text() -> None:
    # Given braces around something that is not an identifier
    template = {"body": "Offer {50% off} today {customer_first_name}"}
    # Then validation passes and rendering keeps them
    assert validate_template(template, appointment_available=False) == []
    assert render(parse_template(template), ANN, TENANT).body == "Offer {50% off} today Ann"


def test_a_body_renders_every_shortcode_in_the_tenant_timezone_and_locale() -> None:
    # Given a German tenant in Berlin and an appointment at 14:30 UTC
    template = parse_template(
        {
            "body": "{customer_full_name} ({customer_phone}, {customer_email}): {service_name}"
            " with {staff_name} at {location_name}, {location_address}"
            " on {appointment_datetime} [{appointment_status}]"
            " — {business_name}"
        }
    )
    # When rendered
    body = render(template, ANN, TENANT).body
    # Then values are substituted and the time is local (CET is UTC+1)
    assert body == (
        "Ann Lee (+4915112345678, ann@example.com): Haircut with Kim at Mitte, Torstr. 1 on 05.03.2025, 15:30"
        " [approved] — Glow Salon"
    )


def test_missing_values_use_the_documented_fallbacks() -> None:
    # Given a recipient with no customer or appointment data
    bare = RecipientData(phone_e164="+14155550100")
    template = parse_template(
        {"body": "Hi {customer_first_name} {customer_last_name}, {customer_name}! {service_name}"}
    )
    # When rendered / Then names fall back to "there", other values to empty, spaces collapse
    assert render(template, bare, TenantStyle(name="Shop")).body == "Hi there, there!"
    assert render(parse_template({"body": "{business_name}"}), bare, TenantStyle(name="Shop")).body == "Shop"


def test_per_number_overrides_win_over_customer_data() -> None:
    manual = RecipientData(
        phone_e164="+14155550100", first_name="Old", overrides={"customer_first_name": "Zoe"}
    )
    assert render(parse_template({"body": "Hi {customer_first_name}"}), manual, TENANT).body == "Hi Zoe"


def test_content_variables_render_and_empty_ones_are_left_to_the_template_default() -> None:
    # Given a content template whose second variable renders empty
    template = parse_template(
        {"content_sid": SID, "variables": {"1": "{customer_first_name}", "2": "{staff_name}"}}
    )
    bare = RecipientData(phone_e164="+14155550100", first_name="Bo")
    # When rendered
    message = render(template, bare, TENANT)
    # Then the sid is kept, the empty variable omitted
    assert message.content_sid == SID
    assert message.content_variables == {"1": "Bo"}
    assert message.body is None


@pytest.mark.parametrize(
    ("locale", "date", "time"),
    [
        ("en_US", "Mar 5, 2025", "3:30 PM"),
        ("en_GB", "5 Mar 2025", "15:30"),
        ("de_DE", "05.03.2025", "15:30"),
        ("fr_FR", "05/03/2025", "15:30"),
        ("pt-BR", "05/03/2025", "15:30"),
        ("nl_NL", "05-03-2025", "15:30"),
        ("ja_JP", "2025-03-05", "15:30"),
    ],
)
def test_dates_and_times_follow_the_locale_table(locale: str, date: str, time: str) -> None:
    moment = datetime(2025, 3, 5, 15, 30)
    assert format_date(moment, locale) == date
    assert format_time(moment, locale) == time


def test_midnight_and_noon_in_twelve_hour_time() -> None:
    assert format_time(datetime(2025, 1, 1, 0, 5), "en_US") == "12:05 AM"
    assert format_time(datetime(2025, 1, 1, 12, 0), "en_US") == "12:00 PM"


def test_an_unknown_timezone_falls_back_to_utc() -> None:
    tenant = TenantStyle(name="X", timezone="Mars/Olympus", locale="en_GB")
    assert render(parse_template({"body": "{appointment_time}"}), ANN, tenant).body == "14:30"


def test_manual_send_overrides_must_be_known_shortcodes() -> None:
    assert validate_overrides({"customer_first_name": "A"}, "recipients.0.variables") == []
    errors = validate_overrides({"favourite": "x", "customer_last_name": 3}, "recipients.0.variables")
    assert [e["field"] for e in errors] == [
        "recipients.0.variables.favourite",
        "recipients.0.variables.customer_last_name",
    ]


def test_only_a_body_of_shortcodes_that_can_all_be_empty_can_render_empty() -> None:
    # Given bodies with and without text or a shortcode that always has a value
    assert can_render_empty(Template(body="{customer_last_name}"))
    assert can_render_empty(Template(body=" {service_name} {staff_name} "))
    assert not can_render_empty(Template(body="{customer_last_name}!"))
    assert not can_render_empty(Template(body="{customer_last_name} {customer_first_name}"))
    assert not can_render_empty(
        Template(content_sid="HX" + "0" * 32, variables={"1": "{customer_last_name}"})
    )


def test_a_template_can_render_too_long_only_when_its_longest_values_pass_the_limits() -> None:
    assert not can_render_too_long(Template(body="Hi {customer_first_name}"))
    assert can_render_too_long(Template(body="x" * 1500 + "{location_address}"))
    assert can_render_too_long(
        Template(content_sid="HX" + "0" * 32, variables={"1": "x" * 900 + "{location_address}"})
    )
    assert not can_render_too_long(
        Template(content_sid="HX" + "0" * 32, variables={"1": "x" * 500 + "{staff_name}"})
    )
