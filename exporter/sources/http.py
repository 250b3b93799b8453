"""The one HTTP client every HTTP source uses: concurrency, timeouts, retries, size limits,
and the mapping of every failure to one reason (docs/reference.md, Counting).

It is aiohttp's client: a poll that fans out to hundreds of requests is bound by the client's
CPU per request, and aiohttp's is a fifth of httpx's (docs/performance.md, "HTTP fan-out").
"""

from __future__ import annotations

import abc
import asyncio
import base64
import json
import math
import random
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote_plus, urlsplit

import aiohttp

from exporter import __version__
from exporter.configtypes import HttpSourceConfig
from exporter.records import PollError, Reason, as_count, decimal, excerpt
from exporter.sources.base import RecordSink, Source

USER_AGENT = f"ingestion-failure-exporter/{__version__}"


class HttpStatusError(PollError):
    """A non-2xx answer, with its status so that a source can react (log in again on 401)."""

    def __init__(self, reason: Reason, detail: str, status: int, body: bytes = b"") -> None:
        super().__init__(reason, detail)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in any case
    body: bytes
    # The ``Link`` header's targets by relation (``next``), as absolute URLs.
    links: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise PollError(Reason.INVALID_RESPONSE, "the body is not JSON") from None


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date."""
    if not value:
        return None
    seconds = decimal(value)
    if seconds is not None:
        return float(seconds)
    try:
        return max(parsedate_to_datetime(value.strip()).timestamp() - now, 0.0)
    except (TypeError, ValueError):
        return None


def status_reason(status: int) -> Reason:
    if status in (401, 403):
        return Reason.AUTH
    if status == 429:
        return Reason.RATE_LIMITED
    return Reason.HTTP_ERROR


def joined(base_url: str, url: str) -> str:
    """``url`` under the base URL's path (``/api`` + ``/jobs`` is ``/api/jobs``); an absolute URL
    stays as it is."""
    if urlsplit(url).scheme:
        return url
    return base_url.rstrip("/") + ("" if url.startswith("/") or not url else "/") + url


def env_proxy(url: str) -> str | None:
    """The proxy that the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) names for
    ``url``'s scheme and host, if any."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class HttpClient:
    """An aiohttp session bound to one source's base URL and limits.

    The session is opened at the first request, on the loop that polls, and keeps at most
    ``max_concurrency`` connections alive between polls.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        max_concurrency: int,
        max_response_bytes: int,
        headers: Mapping[str, str] | None = None,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self._base_url = base_url
        self._headers = {"user-agent": USER_AGENT, **(headers or {})}
        self._limit = max_concurrency
        self._session: aiohttp.ClientSession | None = None
        self._gate = asyncio.Semaphore(max_concurrency)
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._retries = retries
        self._backoff = backoff
        # The loop time by which the current poll must end: retries that would not fit are not made.
        self.deadline: float | None = None

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._limit),
                # Per connection attempt and per read; the poll as a whole is bounded by
                # poll_timeout.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout, sock_read=self._timeout
                ),
                # APIs authenticate by header: no cookie is kept or sent.
                cookie_jar=aiohttp.DummyCookieJar(),
                # Read from the environment once: aiohttp's trust_env looks the proxy and .netrc
                # up again at every request, in a worker thread, which held each request back
                # behind whatever the event loop was computing (a poll took 1.7x as long).
                proxy=env_proxy(self._base_url),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def elsewhere(self, base_url: str) -> HttpClient:
        """A client of another server (a token service) with this one's timeout and size cap,
        one request at a time, and none of its headers: they are the API's, not the server's."""
        return HttpClient(
            base_url,
            timeout=self._timeout,
            max_concurrency=1,
            max_response_bytes=self._max_bytes,
            headers={"accept": "application/json"},
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        max_bytes: int | None = None,
        truncate: bool = False,
        **kwargs: Any,
    ) -> Response:
        """Send with retries; 2xx answers come back, every other outcome raises PollError.

        Connection errors and 5xx are retried with exponential backoff, 429 after its
        ``Retry-After``, as long as the poll's deadline allows. ``truncate`` reads at most
        ``max_bytes`` and stops (for downloads); otherwise a larger body is an error.
        """
        loop = asyncio.get_running_loop()
        what = f"{method} {urlsplit(url).path or url}"
        attempt = 0
        while True:
            began = loop.time()
            try:
                response = await self._send(method, url, max_bytes or self._max_bytes, truncate, kwargs)
            except TimeoutError:
                raise PollError(Reason.TIMEOUT, f"{what}: no answer within {self._timeout:g}s") from None
            except aiohttp.ClientError as exc:
                error: PollError = PollError(Reason.CONNECTION, f"{what}: {type(exc).__name__}")
                wait = self._backoff_for(attempt)
            else:
                if 200 <= response.status < 300:
                    # The connection is free: let the next request take it and go out before
                    # the caller parses and counts this answer, so that the work overlaps the
                    # next round trip instead of delaying it (a fan-out poll took 1.15x as long).
                    await asyncio.sleep(0)
                    return response
                said = excerpt(response.body.decode("utf-8", "replace"))
                error = HttpStatusError(
                    status_reason(response.status),
                    f"{what}: HTTP {response.status}" + (f": {said}" if said else ""),
                    response.status,
                    response.body,
                )
                if response.status == 429:
                    asked = retry_after_seconds(response.headers.get("retry-after"), time.time())
                    wait = self._backoff_for(attempt) if asked is None else asked
                elif response.status >= 500 and response.status != 501:
                    # 501 Not Implemented is the server's lasting answer, not a passing fault.
                    wait = self._backoff_for(attempt)
                else:
                    raise error
            if attempt >= self._retries or not self._fits_budget(loop, wait, loop.time() - began):
                raise error
            await asyncio.sleep(wait)
            attempt += 1

    async def json(self, method: str, url: str, **kwargs: Any) -> Any:
        return (await self.request(method, url, **kwargs)).json()

    async def _send(
        self, method: str, url: str, max_bytes: int, truncate: bool, kwargs: dict[str, Any]
    ) -> Response:
        target = joined(self._base_url, url)
        async with (
            self._gate,
            self._opened().request(method, target, allow_redirects=False, **kwargs) as answer,
        ):

            def too_large() -> PollError:
                return PollError(
                    Reason.INVALID_RESPONSE, f"{method} {answer.url.path}: body over {max_bytes} bytes"
                )

            declared = answer.content_length
            if not truncate and declared is not None and declared > max_bytes:
                raise too_large()
            chunks, size = [], 0
            async for chunk in answer.content.iter_any():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    if truncate:
                        break
                    raise too_large()
            body = b"".join(chunks)
            links: dict[str, str] = {}
            if "link" in answer.headers:  # parsed by aiohttp, and resolved against the answer's URL
                for relations, link in answer.links.items():
                    for relation in relations.split():
                        links.setdefault(relation, str(link["url"]))
            return Response(answer.status, answer.headers, body[:max_bytes] if truncate else body, links)

    def _backoff_for(self, attempt: int) -> float:
        return self._backoff * (2.0**attempt) * (0.5 + random.random() / 2)

    def _fits_budget(self, loop: asyncio.AbstractEventLoop, wait: float, took: float) -> bool:
        """Whether, after waiting ``wait`` seconds, the poll still has as long as the failed
        attempt ``took`` for another: a retry cut off by the deadline would turn the source's
        own error into a timeout, and tell the operator less."""
        return self.deadline is None or loop.time() + wait + took < self.deadline


@dataclass(frozen=True, slots=True)
class Issued:
    """A token a login or token service issued, and when to stop using it."""

    token: str
    renew_at: float = math.inf


T = TypeVar("T")


class IssuedToken:
    """The token a source sends, from a login or token service: obtained when first needed,
    renewed when it is due, and when the platform refuses it (401) before it is due, which
    happens (a session idle too long, a token revoked): then the request is sent once more.
    One renewal at a time: concurrent requests wait for it instead of each logging in."""

    def __init__(self, issue: Callable[[], Awaitable[Issued]] | None, token: str | None = None) -> None:
        """``issue`` obtains a token; None for a token given in the configuration, used as it is."""
        self._issue = issue
        self._token = token
        self._renew_at = math.inf
        self._lock = asyncio.Lock()

    async def current(self, refused: str | None = None) -> str:
        """The token to send; a new one if ``refused`` is the one held."""
        async with self._lock:
            token = self._token
            if self._issue is not None and (
                token is None or token == refused or time.time() >= self._renew_at
            ):
                issued = await self._issue()
                token, self._token, self._renew_at = issued.token, issued.token, issued.renew_at
            if token is None:
                raise PollError(Reason.AUTH, "no token: neither one configured nor a way to obtain one")
            return token

    async def bearer(self, client: HttpClient, method: str, url: str, **kwargs: Any) -> Response:
        """``client.request`` with this token as ``Authorization: Bearer`` (beside the
        request's own headers), renewed once on a 401 as ``send`` does."""
        headers = kwargs.pop("headers", None) or {}

        def request(token: str) -> Awaitable[Response]:
            return client.request(
                method, url, headers={**headers, "authorization": f"Bearer {token}"}, **kwargs
            )

        return await self.send(request)

    async def send(self, request: Callable[[str], Awaitable[T]]) -> T:
        """``request(token)``; on a 401, once more with a fresh token when one can be obtained."""
        token = await self.current()
        try:
            return await request(token)
        except HttpStatusError as exc:
            if exc.status != 401 or self._issue is None:
                raise
        return await request(await self.current(refused=token))


def basic_authorization(user: str, password: str) -> str:
    """An ``Authorization`` header's value for HTTP Basic (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# OAuth 2.0 error codes (RFC 6749, section 5.2) by which a token service refuses a client.
REFUSED_CREDENTIALS = frozenset({"invalid_client", "invalid_scope", "unauthorized_client", "invalid_grant"})


def oauth_error(body: bytes) -> str | None:
    """The ``error`` code of an OAuth 2.0 error answer, if the body is one."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, str) else None


class ClientCredentials:
    """OAuth 2.0 client credentials (RFC 6749, section 4.4): a token from a token service, to be
    renewed a tenth of its lifetime (at most five minutes) before it ends. An ``IssuedToken``'s
    way to obtain one."""

    def __init__(
        self,
        api: HttpClient,
        url: str,
        client_id: str,
        client_secret: str,
        scope: str,
        *,
        issued: Callable[[str], None],
        basic: bool = False,
    ) -> None:
        """Tokens from the service at ``url``, for requests of ``api`` (whose limits and poll
        deadline its requests keep); ``issued`` is told each token (to redact it); ``basic``
        sends the client's credentials as HTTP Basic rather than in the form."""
        self._client, self._api = api.elsewhere(url), api
        self._url = url
        self._form = {"grant_type": "client_credentials"}
        self._headers: dict[str, str] = {}
        if basic:
            # Each half form-encoded first (RFC 6749, section 2.3.1).
            self._headers["authorization"] = basic_authorization(
                quote_plus(client_id), quote_plus(client_secret)
            )
        else:
            self._form |= {"client_id": client_id, "client_secret": client_secret}
        if scope:
            self._form["scope"] = scope
        self._issued = issued

    async def __call__(self) -> Issued:
        self._client.deadline = self._api.deadline
        try:
            response = await self._client.request("POST", self._url, data=self._form, headers=self._headers)
        except HttpStatusError as exc:
            # A refused client is a 400 or 401 with an OAuth error code.
            if exc.status in (400, 401) and oauth_error(exc.body) in REFUSED_CREDENTIALS:
                refused = f"the token service refused the credentials: {exc.detail}"
                raise PollError(Reason.AUTH, refused) from None
            raise
        body = response.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PollError(Reason.AUTH, "the token service answered without an access_token")
        # A number of seconds, or its digits (some services send "3599").
        seconds = float(as_count(lifetime)) or 3600.0
        self._issued(token)
        return Issued(token, renew_at=time.time() + seconds - min(seconds / 10, 300.0))

    async def aclose(self) -> None:
        await self._client.aclose()


HttpConfigT = TypeVar("HttpConfigT", bound=HttpSourceConfig)


class HttpSource(Source[HttpConfigT], Generic[HttpConfigT]):
    """A source read with one HttpClient built from its configuration's limits."""

    def __init__(self, config: HttpConfigT, headers: Mapping[str, str]) -> None:
        super().__init__(config)
        self._http = HttpClient(
            config.base_url,
            timeout=config.timeout,
            max_concurrency=config.max_concurrency,
            max_response_bytes=config.max_response_bytes,
            headers={"accept": "application/json", **headers},
        )

    async def poll(self, out: RecordSink) -> None:
        # One poll of a source at a time (the scheduler's rule), so the client holds its deadline.
        self._http.deadline = out.deadline
        await self.fetch(out)

    @abc.abstractmethod
    async def fetch(self, out: RecordSink) -> None:
        """Read the platform's failures into ``out``."""

    async def aclose(self) -> None:
        await self._http.aclose()


class SingleTenantSource(HttpSource[HttpConfigT], Generic[HttpConfigT]):
    """A source whose records all belong to one tenant: the configured ``tenant``, else a default
    of the platform's. A shard that does not own that tenant does not poll the platform at all."""

    @property
    def tenant(self) -> str:
        return self.config.tenant or self.default_tenant()

    def default_tenant(self) -> str:
        return self.config.name

    async def fetch(self, out: RecordSink) -> None:
        if out.wants(self.tenant):
            await self.read(out)

    @abc.abstractmethod
    async def read(self, out: RecordSink) -> None:
        """Read the platform's failures into ``out`` (the poll, once the shard owns the tenant)."""
