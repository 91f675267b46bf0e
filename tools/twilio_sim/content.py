"""Content templates per account, rendered as Twilio's Content API resources."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .formats import iso8601

CONTENT_SID_RE = re.compile(r"^HX[0-9a-fA-F]{32}$")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_STATUSES = frozenset({"approved", "rejected", "unsubmitted", "received", "pending", "paused", "disabled"})


class TemplateError(ValueError):
    """A template definition the admin API cannot accept."""


@dataclass(slots=True)
class Template:
    sid: str
    account_sid: str
    friendly_name: str
    language: str
    body: str
    variables: dict[str, str]
    status: str
    category: str
    created: float
    rejection_reason: str = ""
    content_type: str = "twilio/text"
    types: dict[str, Any] = field(default_factory=dict)

    def render(self, values: Mapping[str, Any]) -> str:
        """Body with placeholders filled; missing values fall back to the defaults."""

        def fill(match: re.Match[str]) -> str:
            key = match.group(1)
            return str(values.get(key, self.variables.get(key, match.group(0))))

        return _PLACEHOLDER.sub(fill, self.body)


def _default_sid(account_sid: str, friendly_name: str, language: str) -> str:
    # Deterministic so re-registering a template by name updates it in place and
    # tests can know default SIDs without listing first.
    digest = hashlib.sha256(f"{account_sid}:{friendly_name}:{language}".encode()).hexdigest()
    return "HX" + digest[:32]


def default_templates() -> list[dict[str, Any]]:
    return [
        {
            "friendly_name": "appointment_reminder",
            "language": "en",
            "body": "Hi {{1}}, this is a reminder of your appointment on {{2}} at {{3}}. "
            "Reply YES to confirm or NO to cancel.",
            "variables": {"1": "Customer", "2": "Monday", "3": "10:00"},
            "status": "approved",
            "category": "UTILITY",
        },
        {
            "friendly_name": "spring_promo",
            "language": "en",
            "body": "Hi {{1}}, enjoy {{2}} off your next visit this spring!",
            "variables": {"1": "Customer", "2": "20%"},
            "status": "rejected",
            "category": "MARKETING",
            "rejection_reason": "Template content does not match the selected category",
        },
    ]


class TemplateStore:
    def __init__(self) -> None:
        self._by_account: dict[str, dict[str, Template]] = {}

    def upsert(self, account_sid: str, spec: Mapping[str, Any], now: float) -> Template:
        template = _build(account_sid, spec, now)
        templates = self._by_account.setdefault(account_sid, {})
        previous = templates.get(template.sid)
        if previous is not None:
            template.created = previous.created
        templates[template.sid] = template
        return template

    def remove_all(self, account_sid: str) -> None:
        self._by_account.pop(account_sid, None)

    def get(self, account_sid: str, sid: str) -> Template | None:
        return self._by_account.get(account_sid, {}).get(sid)

    def list(self, account_sid: str) -> list[Template]:
        return sorted(self._by_account.get(account_sid, {}).values(), key=lambda t: (t.created, t.sid))

    def clear(self) -> None:
        self._by_account.clear()


def _build(account_sid: str, spec: Mapping[str, Any], now: float) -> Template:
    friendly_name = spec.get("friendly_name")
    body = spec.get("body")
    if not isinstance(friendly_name, str) or not friendly_name:
        raise TemplateError("friendly_name is required")
    if not isinstance(body, str):
        raise TemplateError("body is required")
    language = spec.get("language", "en")
    status = spec.get("status", "approved")
    if status not in _STATUSES:
        raise TemplateError(f"status must be one of {sorted(_STATUSES)}")
    variables = spec.get("variables") or {}
    if not isinstance(variables, dict):
        raise TemplateError("variables must be an object")
    sid = spec.get("sid") or _default_sid(account_sid, friendly_name, str(language))
    if not CONTENT_SID_RE.match(sid):
        raise TemplateError("sid must match ^HX[0-9a-fA-F]{32}$")
    return Template(
        sid=sid,
        account_sid=account_sid,
        friendly_name=friendly_name,
        language=str(language),
        body=body,
        variables={str(k): str(v) for k, v in variables.items()},
        status=status,
        category=str(spec.get("category", "UTILITY")).upper(),
        created=now,
        rejection_reason=str(spec.get("rejection_reason", "")),
        types={"twilio/text": {"body": body}},
    )


def content_resource(template: Template, base_url: str) -> dict[str, Any]:
    """An item of ``GET /v1/Content``."""
    url = f"{base_url}/v1/Content/{template.sid}"
    return {
        **_common(template),
        "url": url,
        "links": {
            "approval_create": f"{url}/ApprovalRequests/whatsapp",
            "approval_fetch": f"{url}/ApprovalRequests",
        },
    }


def content_and_approvals_resource(template: Template) -> dict[str, Any]:
    """An item of ``GET /v1/ContentAndApprovals``."""
    return {**_common(template), "approval_requests": _whatsapp_approval(template)}


def approval_fetch_resource(template: Template, base_url: str) -> dict[str, Any]:
    """``GET /v1/Content/{Sid}/ApprovalRequests``."""
    return {
        "sid": template.sid,
        "account_sid": template.account_sid,
        "whatsapp": {"type": "whatsapp", **_whatsapp_approval(template)},
        "url": f"{base_url}/v1/Content/{template.sid}/ApprovalRequests",
    }


def _common(template: Template) -> dict[str, Any]:
    created = iso8601(template.created)
    return {
        "sid": template.sid,
        "account_sid": template.account_sid,
        "friendly_name": template.friendly_name,
        "language": template.language,
        "variables": template.variables,
        "types": template.types,
        "date_created": created,
        "date_updated": created,
    }


def _whatsapp_approval(template: Template) -> dict[str, Any]:
    return {
        "name": template.friendly_name,
        "category": template.category,
        "content_type": template.content_type,
        "status": template.status,
        "rejection_reason": template.rejection_reason,
        "allow_category_change": False,
    }


def filter_templates(templates: Sequence[Template], query: Mapping[str, list[str]]) -> list[Template]:
    """Apply the v2 list filters (``ChannelEligibility``, ``Language``, ``ContentName``...)."""

    def values(name: str) -> list[str]:
        return query.get(name, []) + query.get(name + "[]", [])

    def first(name: str) -> str | None:
        found = query.get(name)
        return found[0] if found else None

    result = list(templates)
    eligibility = values("ChannelEligibility")
    if eligibility:
        wanted = {e.lower() for e in eligibility}
        result = [t for t in result if f"whatsapp:{t.status}" in wanted]
    languages = values("Language")
    if languages:
        result = [t for t in result if t.language in languages]
    content_types = values("ContentType")
    if content_types:
        result = [t for t in result if t.content_type in content_types]
    if name_pattern := first("ContentName"):
        name_re = re.compile(name_pattern)
        result = [t for t in result if name_re.search(t.friendly_name)]
    if body_pattern := first("Content"):
        body_re = re.compile(body_pattern)
        result = [t for t in result if body_re.search(t.body)]
    # ISO-8601 UTC strings order the same way as the instants they name.
    if after := first("DateCreatedAfter"):
        result = [t for t in result if iso8601(t.created) > after]
    if before := first("DateCreatedBefore"):
        result = [t for t in result if iso8601(t.created) < before]
    by_name = (first("SortByContentName") or "").upper()
    if by_name in ("ASC", "DESC"):
        result.sort(key=lambda t: t.friendly_name, reverse=by_name == "DESC")
    elif (first("SortByDate") or "").upper() == "DESC":
        result.reverse()
    return result
