"""Create requests' form bodies: the fields (last value wins) and the ``MediaUrl`` count."""

from __future__ import annotations

from shared.forms import form_pairs


def decode_form(body: bytes) -> tuple[dict[str, str], int]:
    """Form fields (last value wins) and how many ``MediaUrl`` values were given.

    The fields are those of ``parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)``.
    """
    pairs = form_pairs(body)
    return dict(pairs), sum(1 for name, _ in pairs if name == "MediaUrl")
