"""What a tenant needs to know by heart, printed by ``wce shortcodes`` and ``wce statuses``."""

from __future__ import annotations

from shared.templating import APPOINTMENT_SHORTCODES, BUSINESS_SHORTCODES, CUSTOMER_SHORTCODES

# shortcode → (what it becomes, what it becomes when the value is missing)
SHORTCODE_MEANINGS: dict[str, tuple[str, str]] = {
    "customer_first_name": ("the customer's first name", '"there"'),
    "customer_last_name": ("the customer's last name", "empty"),
    "customer_full_name": ("first and last name", '"there"'),
    "customer_name": ("first and last name", '"there"'),
    "customer_phone": ("the recipient's number (E.164)", "always present"),
    "customer_email": ("the customer's email", "empty"),
    "appointment_date": ("the appointment's date, tenant's time zone and locale", "empty"),
    "appointment_time": ("the appointment's time, tenant's time zone and locale", "empty"),
    "appointment_datetime": ("date and time of the appointment", "empty"),
    "appointment_status": ("the appointment's status", "empty"),
    "service_name": ("the appointment's service", "empty"),
    "location_name": ("the appointment's location", "empty"),
    "location_address": ("the location's address", "empty"),
    "staff_name": ("the staff member of the appointment", "empty"),
    "business_name": ("the tenant's business name", "the tenant's name"),
}


def shortcode_rows() -> list[tuple[str, str, str, str]]:
    """(shortcode, group, meaning, fallback) for every shortcode templates accept."""
    groups = (
        ("customer", CUSTOMER_SHORTCODES),
        ("appointment (audiences with an appointment)", APPOINTMENT_SHORTCODES),
        ("business", BUSINESS_SHORTCODES),
    )
    return [
        ("{" + name + "}", group, *SHORTCODE_MEANINGS[name])
        for group, names in groups
        for name in sorted(names)
    ]


# A recipient's state (the `--state` filter of `wce logs` and `wce export-csv`) → what it means.
RECIPIENT_STATES: dict[str, str] = {
    "pending": "in the campaign, not yet handed to a sender",
    "queued": "given a send slot, waiting for it",
    "sending": "a sender is calling Twilio for it",
    "retry_wait": "a transient error; waiting for its retry tier",
    "unknown": "Twilio may have it; being looked up before anything is sent again",
    "sent": "accepted by Twilio",
    "delivered": "delivered to the phone",
    "read": "read by the customer",
    "undelivered": "Twilio could not deliver it (see the error code)",
    "failed_delivery": "WhatsApp reported the delivery failed (see the error code)",
    "failed": "refused by Twilio or out of attempts (see the error code)",
    "suppressed": "the number opted out; never sent",
    "skipped": "not sent, for the reason in skip_reason (frequency_capped: the tenant's frequency cap)",
    "cancelled": "the campaign was cancelled before it was sent",
}

# A campaign's state → what it means.
CAMPAIGN_STATES: dict[str, str] = {
    "draft": "created, not started (wce campaigns start, or wce campaigns schedule)",
    "scheduled": "starts by itself at its time, its audience taken then (wce campaigns reschedule, cancel)",
    "snapshotting": "starting: its audience is being fixed",
    "running": "sending, or waiting for the sending window to open (shown with the time it opens)",
    "paused": "stopped until resumed (wce campaigns resume); see its pause reason",
    "completed": "every recipient reached an outcome",
    "cancelled": "stopped for good",
    "failed": "could not start or go on",
}
