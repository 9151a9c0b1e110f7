"""POSTing a JSON body, with every way it can fail turned into `DeliveryFailed`."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from mlops.errors import InvalidInput
from mlops.notify.checks import url_problem
from mlops.notify.notifier import DeliveryFailed

if TYPE_CHECKING:
    import httpx

DEFAULT_TIMEOUT_S = 5.0
BODY_EXCERPT = 200
USER_AGENT = "mlops-notify/1"


def where(url: str) -> str:
    """The scheme and host of a URL: enough to tell receivers apart, without secrets in paths."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number
        port = ":?"
    return f"{parts.scheme}://{host}{port}"


def check_url(url: str) -> str:
    problem = url_problem(url)
    if problem is not None:
        raise InvalidInput(f"{problem}: {where(url)!r}")
    return url


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> None:
    """POST `body`; return on a 2xx, raise `DeliveryFailed` on anything else."""
    import httpx  # here, not at the top: a CLI command that sends no alert need not load it

    target = where(url)
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise DeliveryFailed(f"{target} timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{target} unreachable: {type(exc).__name__}: {exc}") from None
    if 200 <= response.status_code < 300:
        return
    excerpt = " ".join(response.text[:BODY_EXCERPT].split())
    raise DeliveryFailed(
        f"{target} answered HTTP {response.status_code}" + (f": {excerpt}" if excerpt else ""),
        retry_after=_retry_after(response.headers.get("retry-after")),
    )


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare for webhooks; the outbox's own backoff applies
    return seconds if seconds >= 0 else None


def make_client(timeout: float, transport: httpx.BaseTransport | None) -> httpx.Client:
    import httpx

    return httpx.Client(
        timeout=timeout,
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
    )


class HttpNotifier:
    """What the HTTP notifiers share: a checked URL and one client, closed with them."""

    def __init__(self, url: str, *, timeout: float, transport: httpx.BaseTransport | None) -> None:
        self.url = check_url(url)
        self._client = make_client(timeout, transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
