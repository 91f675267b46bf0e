"""Twilio REST client: create, fetch and list messages, list Content templates.

One ``TwilioClient`` per process: a single keep-alive pool of at most ``twilio_max_connections``,
every call under a timeout, Basic auth per tenant. Failures raise ``TwilioError`` carrying the
HTTP status, Twilio's error code and message, ``Retry-After`` and — the fact the sender's
duplicate protection rests on — whether the request may have reached Twilio: a refused or failed
connection (or no free connection in time) means it never left; a read timeout or a broken
connection after writing means it may have.

The transport is the project's lean HTTP/1.1 client (``shared.http1``): creates are the hottest
path of the system, and measured against the simulator on a 2-core machine it costs a fraction
of aiohttp's CPU per request (aiohttp in turn served about ten times httpx's rate at hundreds of
requests in flight).
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import orjson

from shared.http1 import KeepAliveClient, NotSent, ResponseLost, WriteDeadlinePassed

API_VERSION = "2010-04-01"
USER_AGENT = "whatsapp-campaign-engine/0.1"
FORM = "application/x-www-form-urlencoded"


class ProxyConfigured(RuntimeError):
    """A proxy is configured for Twilio's hosts, and this client connects directly."""


def _environment_proxy(environ: Mapping[str, str], scheme: str) -> tuple[str, str] | None:
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if environ.get(name):
            return name, environ[name]
    return None


def _exempt(host: str, no_proxy: str) -> bool:
    """``NO_PROXY`` as curl reads it: ``*``, or host names (a leading dot optional) matching the
    host or a domain it is in."""
    for entry in (part.strip().lower() for part in no_proxy.split(",")):
        name = entry.split(":", 1)[0].lstrip(".") if entry.count(":") <= 1 else entry
        if entry == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_proxies(urls: Iterable[str], environ: Mapping[str, str] = os.environ) -> None:
    """Refuse to start when a proxy (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``) applies to a
    Twilio URL: the client does not tunnel through proxies, and silently going direct where the
    network expects a proxy is worse than a clear error. ``NO_PROXY`` exempts hosts as usual;
    this machine's own addresses are always reached directly."""
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname
        if not host or _is_loopback(host):
            continue
        proxy = _environment_proxy(environ, parts.scheme)
        if proxy is not None and not _exempt(host.lower(), no_proxy):
            raise ProxyConfigured(
                f"{proxy[0]} is set ({proxy[1]}) but the Twilio client connects directly and does not"
                f" tunnel through proxies: add {host} to NO_PROXY if it is reachable directly, or unset"
                f" {proxy[0]}"
            )


@dataclass(frozen=True)
class TwilioCredentials:
    account_sid: str
    auth_token: str


class TwilioError(Exception):
    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        retry_after_s: float | None = None,
        reached: bool = True,
        missed_write_by: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.retry_after_s = retry_after_s
        self.reached = reached
        # Not written because the caller's ``write_by`` had passed (never reached Twilio).
        self.missed_write_by = missed_write_by


@dataclass(frozen=True)
class CreatedMessage:
    sid: str
    status: str | None


@dataclass(frozen=True)
class ListedMessage:
    sid: str
    to: str | None
    from_: str | None
    status: str | None
    date_created: datetime | None
    date_sent: datetime | None


@dataclass(frozen=True)
class FetchedMessage:
    sid: str
    status: str | None
    error_code: int | None
    error_message: str | None


@dataclass(frozen=True)
class ContentTemplate:
    sid: str
    friendly_name: str | None
    language: str | None
    variables: dict[str, Any] = field(default_factory=dict)
    types: tuple[str, ...] = ()
    approval_status: str | None = None
    category: str | None = None

    @property
    def approved(self) -> bool:
        return self.approval_status == "approved"


@lru_cache(maxsize=1024)
def _basic_auth(account_sid: str, auth_token: str) -> str:
    return "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_twilio_date(value: str | None) -> datetime | None:
    """Messages API dates are RFC 2822; Content API dates are ISO 8601."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _error_from_response(status: int, headers: Mapping[str, str], content: bytes) -> TwilioError:
    code: int | None = None
    message = f"HTTP {status}"
    try:
        payload = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        payload = {}
    if isinstance(payload, dict):
        raw_code = payload.get("code")
        if isinstance(raw_code, int) or (isinstance(raw_code, str) and raw_code.isdigit()):
            code = int(raw_code)
        message = str(payload.get("message") or payload.get("detail") or payload.get("title") or message)
    return TwilioError(
        message,
        http_status=status,
        code=code,
        retry_after_s=parse_retry_after(headers.get("retry-after")),
        reached=True,
    )


def _transport_error(exc: BaseException) -> TwilioError:
    # Only a request that provably never left is safe to send again.
    reached = not isinstance(exc, NotSent)
    return TwilioError(
        f"{type(exc).__name__}: {exc}".strip(),
        reached=reached,
        missed_write_by=isinstance(exc, WriteDeadlinePassed),
    )


# ``quote_plus`` for ASCII text through one ``str.translate`` (a quarter of its time for a
# phone number); other text goes through ``quote_plus`` itself.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_ASCII_QUOTED = {
    code: chr(code) if code in _UNRESERVED else "+" if code == 0x20 else f"%{code:02X}" for code in range(128)
}


def _quote(value: str) -> str:
    return value.translate(_ASCII_QUOTED) if value.isascii() else quote_plus(value)


# The parameters that repeat from message to message (sender, callback URL, validity) are
# encoded once; ``To``, ``Body`` and ``ContentVariables`` change with every recipient.
_quote_repeated = lru_cache(maxsize=4096)(_quote)
_PER_RECIPIENT = frozenset({"To", "Body", "ContentVariables"})


def encode_form(params: Mapping[str, Any]) -> bytes:
    """``application/x-www-form-urlencoded``, as ``urlencode`` would write it."""
    pairs = []
    for key, value in params.items():
        text = str(value)
        pairs.append(
            f"{_quote_repeated(key)}={_quote(text) if key in _PER_RECIPIENT else _quote_repeated(text)}"
        )
    return "&".join(pairs).encode()


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    # Sending an empty value is not the same as omitting the parameter.
    return {key: value for key, value in params.items() if value is not None}


@dataclass(frozen=True)
class Response:
    status: int
    content: bytes


class TwilioClient:
    def __init__(
        self,
        *,
        api_base_url: str,
        content_base_url: str,
        timeout_s: float,
        max_connections: int,
        max_idle_s: float | None = 4.0,
    ) -> None:
        refuse_proxies([api_base_url, content_base_url])
        self._api_base = api_base_url.rstrip("/")
        self._content_base = content_base_url.rstrip("/")
        # ``connect_timeout_s`` bounds the wait for a free or new connection: a request that
        # times out there was never written. ``timeout_s`` bounds the wait for the answer.
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        # Below the idle timeout of the servers in front of Twilio: a socket the server closes
        # just as a create is written on it makes that create's fate unknown.
        self._max_idle_s = max_idle_s
        self._http: KeepAliveClient | None = None

    def _client(self) -> KeepAliveClient:
        # Created on first use, inside the running event loop.
        if self._http is None:
            self._http = KeepAliveClient(
                self._timeout_s,
                connect_timeout_s=self._timeout_s,
                max_connections=self._max_connections,
                max_idle_s=self._max_idle_s,
                default_headers=(
                    ("Accept", "application/json"),
                    ("Accept-Charset", "utf-8"),
                    ("User-Agent", USER_AGENT),
                ),
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _request(
        self,
        method: str,
        url: str,
        credentials: TwilioCredentials,
        *,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        write_by: float | None = None,
    ) -> Response:
        headers = [("Authorization", _basic_auth(credentials.account_sid, credentials.auth_token))]
        body = b""
        if data is not None:
            body = encode_form(data)
            headers.append(("Content-Type", FORM))
        if params:
            url = f"{url}?{urlencode({key: str(value) for key, value in params.items()})}"
        try:
            response = await self._client().request(
                method, url, headers=headers, body=body, write_by=write_by
            )
        except (NotSent, ResponseLost, OSError, TimeoutError) as exc:
            raise _transport_error(exc) from exc
        if response.status >= 300:
            raise _error_from_response(response.status, response.headers, response.body)
        return Response(response.status, response.body)

    def _messages_url(self, account_sid: str) -> str:
        return f"{self._api_base}/{API_VERSION}/Accounts/{account_sid}/Messages.json"

    async def create_message(
        self,
        credentials: TwilioCredentials,
        *,
        to: str,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        body: str | None = None,
        content_sid: str | None = None,
        content_variables: Mapping[str, str] | None = None,
        status_callback: str | None = None,
        validity_period: int | None = None,
        write_by: float | None = None,
    ) -> CreatedMessage:
        """Create a message. ``write_by`` (``time.monotonic()``): if the request cannot be written
        by then (the process was frozen or starved), it is not sent at all (TwilioError, not
        reached)."""
        form = _drop_none(
            {
                "To": to,
                "From": from_,
                "MessagingServiceSid": messaging_service_sid,
                "Body": body,
                "ContentSid": content_sid,
                "ContentVariables": orjson.dumps(dict(content_variables)).decode()
                if content_sid and content_variables
                else None,
                "StatusCallback": status_callback,
                "ValidityPeriod": validity_period,
            }
        )
        response = await self._request(
            "POST", self._messages_url(credentials.account_sid), credentials, data=form, write_by=write_by
        )
        try:
            payload = orjson.loads(response.content)
            return CreatedMessage(sid=str(payload["sid"]), status=payload.get("status"))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            # Accepted but unreadable: the message exists, only its sid is unknown.
            raise TwilioError(f"unreadable 2xx response: {exc}", http_status=None, reached=True) from exc

    async def fetch_message(self, credentials: TwilioCredentials, sid: str) -> FetchedMessage:
        """One message by its SID (``GET .../Messages/{Sid}.json``); a message Twilio does not
        have raises TwilioError with ``http_status`` 404."""
        url = f"{self._messages_url(credentials.account_sid).removesuffix('.json')}/{quote_plus(sid)}.json"
        response = await self._request("GET", url, credentials)
        try:
            payload = orjson.loads(response.content)
            raw_code = payload.get("error_code")
            return FetchedMessage(
                sid=str(payload["sid"]),
                status=payload.get("status"),
                error_code=int(raw_code) if raw_code not in (None, "") else None,
                error_message=payload.get("error_message"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TwilioError(f"unreadable 2xx response: {exc}", http_status=None, reached=True) from exc

    def _same_host(self, base: str, next_url: str) -> str:
        # Follow pagination on the configured host only: credentials never go anywhere else.
        parts = urlsplit(next_url)
        return f"{base}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    async def _pages(
        self,
        credentials: TwilioCredentials,
        url: str,
        params: Mapping[str, Any] | None,
        base: str,
        max_pages: int,
    ) -> AsyncIterator[dict[str, Any]]:
        next_url: str | None = url
        page_params: Mapping[str, Any] | None = params
        for _ in range(max_pages):
            if next_url is None:
                return
            response = await self._request("GET", next_url, credentials, params=page_params)
            payload = orjson.loads(response.content)
            yield payload
            meta = payload.get("meta") or {}
            following = meta.get("next_page_url") or payload.get("next_page_uri")
            next_url = self._same_host(base, following) if following else None
            page_params = None

    async def list_messages(
        self,
        credentials: TwilioCredentials,
        *,
        to: str,
        from_: str | None,
        sent_after: datetime | None = None,
        page_size: int = 50,
        max_pages: int = 20,
    ) -> list[ListedMessage]:
        """Messages from ``from_`` to ``to`` (``DateSent`` on or after ``sent_after``), newest first."""
        params = _drop_none(
            {
                "To": to,
                "From": from_,
                "DateSent>": sent_after.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if sent_after
                else None,
                "PageSize": page_size,
            }
        )
        found: list[ListedMessage] = []
        url = self._messages_url(credentials.account_sid)
        async for page in self._pages(credentials, url, params, self._api_base, max_pages):
            for item in page.get("messages") or []:
                found.append(
                    ListedMessage(
                        sid=str(item.get("sid")),
                        to=item.get("to"),
                        from_=item.get("from"),
                        status=item.get("status"),
                        date_created=parse_twilio_date(item.get("date_created")),
                        date_sent=parse_twilio_date(item.get("date_sent")),
                    )
                )
        return found

    async def list_content_templates(
        self, credentials: TwilioCredentials, *, max_pages: int = 50
    ) -> list[ContentTemplate]:
        """Every Content template of the account with its WhatsApp approval status."""
        templates: list[ContentTemplate] = []
        url = f"{self._content_base}/v1/ContentAndApprovals"
        async for page in self._pages(credentials, url, {"PageSize": 500}, self._content_base, max_pages):
            for item in page.get("contents") or []:
                approval = item.get("approval_requests") or {}
                # Examples show the approval fields at the top level; some accounts nest them per channel.
                if "status" not in approval and isinstance(approval.get("whatsapp"), dict):
                    approval = approval["whatsapp"]
                templates.append(
                    ContentTemplate(
                        sid=str(item.get("sid")),
                        friendly_name=item.get("friendly_name"),
                        language=item.get("language"),
                        variables=dict(item.get("variables") or {}),
                        types=tuple((item.get("types") or {}).keys()),
                        approval_status=approval.get("status"),
                        category=approval.get("category"),
                    )
                )
        return templates


async def approved_content_sids(client: TwilioClient, credentials: TwilioCredentials) -> set[str]:
    """The Content SIDs a tenant may choose for a campaign: only WhatsApp-approved templates."""
    return {
        template.sid for template in await client.list_content_templates(credentials) if template.approved
    }
