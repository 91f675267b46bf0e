"""The wizard's form fields become the API's audience and template, and each sample recipient's
message is rendered with the warnings a person needs before sending."""

from __future__ import annotations

from services.console.routes_account import phones_in_csv
from services.console.sse import event, parse_events
from services.console.wizard import audience_body, render_samples, template_body
from shared.templating import TenantStyle

STYLE = TenantStyle(name="Bloom", timezone="Europe/Berlin", locale="en_GB")
SAMPLE = [
    {"name": "Ada Lovelace", "phone": "+441••••••01", "last_appointment_at": "2025-03-05T14:30:00+00:00"}
]


def test_empty_fields_are_left_out_so_the_apis_defaults_apply() -> None:
    assert audience_body({"segment": "lapsed", "days": "", "audience_form": "1"}) == {
        "segment": "lapsed",
        "exclude_suppressed": False,
    }


def test_numbers_lists_and_the_checkbox_become_json_and_unparseable_text_goes_on_for_the_api_to_name() -> (
    None
):
    body = audience_body(
        {
            "segment": "lapsed",
            "days": "90",
            "service_ids": "svc-cut, svc-colour\nsvc-cut",
            "min_appointments": "two",
            "exclude_suppressed": "on",
            "audience_form": "1",
        }
    )
    assert body == {
        "segment": "lapsed",
        "days": 90,
        "service_ids": ["svc-cut", "svc-colour", "svc-cut"],
        "min_appointments": "two",
        "exclude_suppressed": True,
    }


def test_a_window_is_sent_only_for_the_segments_that_take_one() -> None:
    assert "days" not in audience_body({"segment": "all_customers", "days": "30"})
    assert audience_body({"segment": "repeat", "min_count": "4"})["min_count"] == 4


def test_the_template_is_the_body_or_the_content_template_with_its_filled_variables() -> None:
    assert template_body({"message_kind": "body", "body": "Hi"}) == {"body": "Hi"}
    sid = "HX" + "a" * 32
    fields = {
        "message_kind": "content",
        "content_sid": sid,
        "variable_1": "{customer_first_name}",
        "variable_2": " ",
    }
    assert template_body(fields) == {"content_sid": sid, "variables": {"1": "{customer_first_name}"}}


def test_samples_are_rendered_with_their_names_and_dates_in_the_tenants_style() -> None:
    samples, problems = render_samples(
        {"body": "Hi {customer_first_name}, last seen {appointment_date}"},
        SAMPLE,
        style=STYLE,
        provides_appointment=True,
    )
    assert problems == []
    assert samples[0].text == "Hi Ada, last seen 5 Mar 2025"
    assert samples[0].warnings == []


def test_samples_name_their_appointments_service_location_and_staff_where_the_data_has_them() -> None:
    # Given a sample whose appointment has a service, location and staff member, and one without
    sample = [
        {
            **SAMPLE[0],
            "appointment_starts_at": "2025-03-07T09:00:00+00:00",
            "service_name": "Haircut",
            "location_name": "Downtown",
            "location_address": "1 Main St",
            "staff_name": "Maria",
        },
        {"name": "Bob", "phone": "+441••••••02", "appointment_starts_at": "2025-03-08T09:00:00+00:00"},
    ]
    body = {
        "body": "{service_name} with {staff_name} at {location_name}, {location_address}, {appointment_date}"
    }

    # When they are rendered for a segment whose messages refer to an appointment
    named, problems = render_samples(body, sample, style=STYLE, provides_appointment=True)

    # Then the names are the appointment's, the date the appointment's own, empty where it has none
    assert problems == []
    assert named[0].text == "Haircut with Maria at Downtown, 1 Main St, 7 Mar 2025"
    assert named[1].text == "with at,, 8 Mar 2025"


def test_a_message_that_renders_empty_or_could_grow_too_long_is_warned_about() -> None:
    empty, _ = render_samples(
        {"body": "{customer_last_name}"},
        [{"name": "Ada", "phone": "+1"}],
        style=STYLE,
        provides_appointment=False,
    )
    assert any("empty" in w for w in empty[0].warnings)
    _, problems = render_samples(
        {"body": "x" * 1500 + "{location_address}"}, SAMPLE, style=STYLE, provides_appointment=True
    )
    assert any("1600" in p for p in problems)
    _, unknown = render_samples({"body": "Hi {first}"}, SAMPLE, style=STYLE, provides_appointment=True)
    assert unknown == ["unknown shortcode {first}"]


def test_an_uploaded_list_gives_the_phone_column_or_the_first_one() -> None:
    assert phones_in_csv("name,phone\nAda,+44 20 7946 0001\nBob,\n") == ["+44 20 7946 0001"]
    assert phones_in_csv("+14155550100\n+14155550101\n\n") == ["+14155550100", "+14155550101"]
    assert phones_in_csv("") == []


async def test_server_sent_events_carry_multi_line_html_and_read_back_the_trackers_events() -> None:
    assert event("progress", "<p>\n50 %</p>") == b"event: progress\ndata: <p>\ndata: 50 %</p>\n\n"

    async def lines():
        for line in [
            "retry: 1000",
            "",
            "event: progress",
            'data: {"a": 1}',
            "",
            "event: completed",
            "data: {}",
            "",
        ]:
            yield line

    assert [item async for item in parse_events(lines())] == [("progress", '{"a": 1}'), ("completed", "{}")]
