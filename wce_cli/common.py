"""What every ``wce`` command shares: output consoles, and mistakes told in one line on stderr
with a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from rich.console import Console

from wce_cli.client import ApiError

DEFAULT_API_URL = "http://127.0.0.1:8000"
ApiUrl = Annotated[str, typer.Option(envvar="WCE_API_URL", help="Tenant API base URL.")]
ApiKey = Annotated[str, typer.Option(envvar="WCE_API_KEY", help="Tenant API key.", show_default=False)]

console = Console()
errors = Console(stderr=True)

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"error: {message}", soft_wrap=True, highlight=False, markup=False)
    raise typer.Exit(code)


def require_key(api_key: str) -> str:
    if not api_key.strip():
        fail("no API key: pass --api-key KEY or set WCE_API_KEY", code=2)
    return api_key.strip()


def require_token(token: str) -> str:
    if not token.strip():
        fail("no operator token: pass --token TOKEN or set WCE_OPERATOR_TOKEN", code=2)
    return token.strip()


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run one command's requests; whatever goes wrong becomes one line and exit code 1."""
    try:
        return asyncio.run(work)
    except ApiError as exc:
        fail(str(exc))
    except httpx.TransportError as exc:
        try:
            where = f" {exc.request.url.scheme}://{exc.request.url.netloc.decode()}"
        except RuntimeError:
            where = ""
        fail(f"cannot reach{where}: {exc or type(exc).__name__} (is the stack running? `make run`)")
    except httpx.InvalidURL as exc:
        fail(f"invalid URL: {exc}")
    except OSError as exc:
        fail(str(exc))
