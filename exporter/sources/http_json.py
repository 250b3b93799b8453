"""A platform without code: failures read from a JSON-over-HTTP API as the configuration says.

One pattern underlies every HTTP kind: authenticate, list (with paging), optionally fan out from
each listed item to a second request (a job's failed files), and map fields to records. Here it
is configuration (README, "A platform without code"): requests are templates over the tenant,
its variables, the poll's time window and the listed item; answers are read with JMESPath. The
same client as the built-in kinds sends every request, with their limits, retries and reasons.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from exporter.configtypes import Duration, Frozen, HttpSourceConfig, SecretFile, check_http_url, field_problem
from exporter.records import SCOPE_SEPARATOR, FailureRecord, PollError, Reason, as_count, text_of
from exporter.sources.base import RecordSink, RepeatedFailures, cancel, gather_parts
from exporter.sources.http import (
    ClientCredentials,
    HttpSource,
    IssuedToken,
    Response,
    basic_authorization,
    joined,
)
from exporter.sources.queries import (
    Expression,
    Missing,
    Template,
    as_text,
    body_templates,
    body_text,
    render_body,
    templates_in,
    to_epoch,
)

# What each place's expressions may start from (README, "A platform without code").
REQUEST_ROOTS = frozenset({"tenant", "vars", "each", "window", "page"})
ITEM_ROOTS = frozenset({"tenant", "vars", "each", "window", "item"})
FAN_OUT_ROOTS = REQUEST_ROOTS | {"item"}
LOOKUP_ROOTS = ITEM_ROOTS | {"lookup"}
SELECT_RECORD_ROOTS = ITEM_ROOTS | {"record"}
RECORD_ROOTS = SELECT_RECORD_ROOTS | {"lookup"}
EACH_ROOTS = frozenset({"tenant", "vars", "window"})

# Lookups kept between polls, at most; the oldest are dropped first.
LOOKUP_CACHE_SIZE = 10_000


def _expression(roots: frozenset[str] | None) -> PlainValidator:
    """Compiles an expression that may read ``roots`` (None: an answer's, any name)."""

    def validate(value: Any) -> Expression:
        return value if isinstance(value, Expression) else Expression(value, roots)

    return PlainValidator(validate)


# Written back as the configuration wrote them (the state file's fingerprint of the settings).
AS_TEXT = PlainSerializer(lambda written: written.text)
AnswerExpression = Annotated[Expression, _expression(None), AS_TEXT]
EachExpression = Annotated[Expression, _expression(EACH_ROOTS), AS_TEXT]
ItemExpression = Annotated[Expression, _expression(ITEM_ROOTS), AS_TEXT]
SelectRecordExpression = Annotated[Expression, _expression(SELECT_RECORD_ROOTS), AS_TEXT]
RecordExpression = Annotated[Expression, _expression(RECORD_ROOTS), AS_TEXT]
# Compiled by their request, which knows what its place provides.
RequestTemplate = Annotated[Template, AS_TEXT]


class Compiled(Frozen):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Paging(Compiled):
    """How the pages of an answer follow each other; ``page.*`` in the request's templates."""

    style: Literal["offset", "page", "cursor", "next_link"]
    # Items asked for per page (``page.limit``); a shorter page is the last, unless ``total``.
    limit: int = Field(default=100, ge=1, le=100_000)
    start: int = Field(default=0, ge=0)  # offset: the first offset
    first_page: int = Field(default=1, ge=0)  # page: the first page's number
    total: AnswerExpression | None = None  # offset, page: the number of items in all pages
    cursor: AnswerExpression | None = None  # cursor: the next page's cursor; null on the last
    next: AnswerExpression | None = None  # next_link: a field with the next page's URL
    max_pages: int = Field(default=1000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _fields_of_the_style(self) -> Paging:
        if self.style == "cursor" and self.cursor is None:
            raise field_problem("cursor", "field required: where each answer gives the next cursor")
        for field, style in (("cursor", "cursor"), ("next", "next_link")):
            if getattr(self, field) is not None and self.style != style:
                raise field_problem(field, f"only read with style: {style}")
        if self.total is not None and self.style not in ("offset", "page"):
            raise field_problem("total", "only read with style: offset or page")
        return self

    def following(self, page: dict[str, Any], items: list[Any], body: Any) -> dict[str, Any] | None:
        """The page after ``page`` (whose answer is ``body``, listing ``items``), None after
        the last; not for ``next_link``, whose next request is a link."""
        if self.style == "cursor":
            assert self.cursor is not None
            cursor = self.cursor(body)
            return None if cursor is None or cursor == "" else {**page, "cursor": cursor}
        total = self.total(body) if self.total is not None else None
        if not items or (total is None and len(items) < self.limit):
            return None
        if self.style == "offset":
            page = {**page, "offset": page["offset"] + len(items)}
            position = page["offset"]  # of the next item, as the total counts
        else:
            page = {**page, "number": page["number"] + 1}
            position = (page["number"] - self.first_page) * self.limit
        if isinstance(total, int | float) and not isinstance(total, bool) and position >= total:
            return None
        return page

    def first(self) -> dict[str, Any]:
        page: dict[str, Any] = {"limit": self.limit}
        if self.style == "offset":
            page["offset"] = self.start
        elif self.style == "page":
            page["number"] = self.first_page
        elif self.style == "cursor":
            page["cursor"] = None
        return page


class Request(Compiled):
    """One templated request, and where its answer lists what it lists."""

    method: Literal["GET", "POST"] = "GET"
    path: RequestTemplate
    query: dict[str, RequestTemplate] = {}
    headers: dict[str, RequestTemplate] = {}
    body: Any = None  # JSON; its strings are templates
    items: AnswerExpression | None = None
    # Truthy when an answer, though 2xx, reports a failure (``success == `false```).
    error_when: AnswerExpression | None = None
    paging: Paging | None = None

    # What this place's templates may read.
    roots: ClassVar[frozenset[str]] = REQUEST_ROOTS

    @field_serializer("body")
    def _body_as_written(self, body: Any) -> Any:
        return body_text(body)

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return _template(value, cls.roots)

    @field_validator("query", "headers", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        templates = {}
        for key, text in value.items():
            try:
                templates[str(key)] = _template(text, cls.roots)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return templates

    @field_validator("body", mode="before")
    @classmethod
    def _body(cls, value: Any) -> Any:
        return body_templates(value, cls.roots)

    @model_validator(mode="after")
    def _paging_is_sent(self) -> Request:
        """A paged request must send where it is: else it would ask for the first page until
        ``max_pages``."""
        needed = {"offset": "page.offset", "page": "page.number", "cursor": "page.cursor"}
        if self.paging is None or self.paging.style not in needed:
            return self
        templates = [self.path, *self.query.values(), *self.headers.values(), *templates_in(self.body)]
        if not any(needed[self.paging.style] in name for t in templates for name in t.expressions()):
            raise field_problem(
                "paging", f"style {self.paging.style} needs {{{needed[self.paging.style]}}} in the request"
            )
        return self

    def render(self, context: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The path and the request's keyword arguments for the client."""
        path = self.path.path(context)
        kwargs: dict[str, Any] = {}
        query = [
            (key, as_text(one))
            for key, template in self.query.items()
            for value in [template.value(context)]
            if value is not None
            for one in (value if isinstance(value, list) else [value])
        ]
        if query:
            kwargs["params"] = query
        headers = {
            key: as_text(value)
            for key, template in self.headers.items()
            if (value := template.value(context)) is not None
        }
        if headers:
            kwargs["headers"] = headers
        if self.body is not None:
            kwargs["json"] = render_body(self.body, context)
        return path, kwargs


def _template(value: Any, roots: frozenset[str]) -> Template:
    if isinstance(value, Template):
        return value
    return Template(value if isinstance(value, str) else as_text(value), roots)


class ListRequest(Request):
    items: AnswerExpression
    # One request (with its pages) per value of this list: ``each`` in the templates.
    for_each: EachExpression | None = None
    # Listed items for which this is false are left out (``item`` is the listed item).
    select: ItemExpression | None = None


class FanOut(Request):
    roots: ClassVar[frozenset[str]] = FAN_OUT_ROOTS
    items: AnswerExpression
    # The part of the poll each listed item's requests are (default: the rendered path).
    scope: RequestTemplate | None = None

    @field_validator("scope", mode="before")
    @classmethod
    def _scope(cls, value: Any) -> Any:
        return None if value is None else _template(value, ITEM_ROOTS)


class Lookup(Request):
    """A request per listed item whose answer the records may read (``lookup.<name>``), kept
    ``cache_for`` by its rendered request; one that fails or cannot be rendered is null."""

    roots: ClassVar[frozenset[str]] = LOOKUP_ROOTS
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    result: AnswerExpression | None = None  # what is kept of the answer (default all of it)
    cache_for: Duration = 3600.0


class Records(Compiled):
    """Each record's fields, read from ``record`` (and ``item``, ``lookup``, ``tenant``...)."""

    identity: tuple[RecordExpression, ...] = Field(min_length=1)
    message: RecordExpression
    tenant: RecordExpression | None = None
    platform: RecordExpression | None = None
    error_type: RecordExpression | None = None
    retry_count: RecordExpression | None = None
    # A record listed by several listed items (runs) is one record whose retry count is the
    # number of other runs (the Commvault rule of docs/reference.md).
    derive_retries: bool = False
    failed_at: RecordExpression | None = None
    name: RecordExpression | None = None
    location: RecordExpression | None = None
    select: SelectRecordExpression | None = None

    @model_validator(mode="after")
    def _one_retry_rule(self) -> Records:
        if self.derive_retries and self.retry_count is not None:
            raise field_problem("retry_count", "give retry_count or derive_retries, not both")
        return self


class HttpJsonTenant(Frozen):
    id: str = Field(min_length=1)
    vars: dict[str, Any] = {}


AUTH_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "bearer": ("token",),
    "api_key": ("api_key",),
    "basic": ("username", "password"),
    "oauth2": ("token_url", "client_id", "client_secret"),
}


class HttpJsonConfig(HttpSourceConfig):
    secret_fields = ("token", "api_key", "password", "client_secret")

    kind: Literal["http_json"]
    auth: Literal["none", "bearer", "api_key", "basic", "oauth2"] = "none"
    token: SecretStr | None = None
    token_file: SecretFile = None
    api_key: SecretStr | None = None
    api_key_file: SecretFile = None
    api_key_header: str = Field(default="x-api-key", min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    password_file: SecretFile = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: SecretFile = None
    scopes: str | tuple[str, ...] = ""
    client_auth: Literal["post", "basic"] = "post"
    headers: dict[str, str] = {}
    tenants: tuple[HttpJsonTenant, ...] = ()
    vars: dict[str, Any] = {}
    lookback: Duration = 86400.0
    listing: ListRequest = Field(alias="list")
    fan_out: FanOut | None = None
    lookups: tuple[Lookup, ...] = ()
    records: Records

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> HttpJsonConfig:
        needed = AUTH_FIELDS[self.auth]
        for field in needed:
            if getattr(self, field) is None:
                hint = f" (or {field}_file)" if field in self.secret_fields else ""
                raise field_problem(field, f"field required with auth: {self.auth}: give {field}{hint}")
        for auth, fields in AUTH_FIELDS.items():
            for field in fields:
                if auth != self.auth and field not in needed and getattr(self, field) is not None:
                    raise field_problem(field, f"only read with auth: {auth}")
        if self.token_url is not None:
            check_http_url(self.token_url)
        if self.tenants and self.tenant is not None:
            raise field_problem("tenants", "give tenant or tenants, not both")
        if self.records.platform is None and self.platform is None:
            raise field_problem("records", "give records.platform, or the source's platform")
        if self.records.derive_retries and self.fan_out is None:
            raise field_problem(
                "records", "derive_retries counts the listed items (runs) a record is in: it needs fan_out"
            )
        names = [lookup.name for lookup in self.lookups]
        if len(set(names)) != len(names):
            raise field_problem("lookups", "two lookups have the same name")
        return self

    def open(self) -> HttpJsonSource:
        return HttpJsonSource(self)


def window_of(now: float, lookback: float) -> dict[str, Any]:
    """The poll's time window (``window.*`` in templates), in each spelling an API may want."""
    start, end = now - lookback, now

    def rfc3339(moment: float) -> str:
        return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    return {
        "seconds": int(lookback),
        "start": int(start),
        "end": int(end),
        "start_ms": int(start * 1000),
        "end_ms": int(end * 1000),
        "start_rfc3339": rfc3339(start),
        "end_rfc3339": rfc3339(end),
    }


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, and empty strings, lists and objects are false (0 is true)."""
    if value is None or value is False:
        return False
    return len(value) > 0 if isinstance(value, str | list | dict) else True


class Poll:
    """Where one poll's records go, and the records repeated across its listed items."""

    def __init__(self, out: RecordSink) -> None:
        self.out = out
        self.started = time.monotonic()
        self._repeats: dict[str, RepeatedFailures[tuple[str, ...]]] = {}

    def repeats(self, tenant: str) -> RepeatedFailures[tuple[str, ...]]:
        seen = self._repeats.get(tenant)
        if seen is None:
            seen = self._repeats[tenant] = RepeatedFailures(self.out, tenant)
        return seen


class HttpJsonSource(HttpSource[HttpJsonConfig]):
    def __init__(self, config: HttpJsonConfig) -> None:
        super().__init__(config, {**config.headers, **static_auth(config)})
        self._origin = urlsplit(config.base_url)[:2]
        self._token: IssuedToken | None = None
        self._credentials: ClientCredentials | None = None
        if config.auth == "oauth2" and config.token_url is not None and config.client_id is not None:
            self._credentials = ClientCredentials(
                self._http,
                config.token_url,
                config.client_id,
                config.secret("client_secret") or "",
                " ".join(config.scopes) if isinstance(config.scopes, tuple) else config.scopes,
                basic=config.client_auth == "basic",
                issued=lambda token: self.secret_issued(token),
            )
            self._token = IssuedToken(self._credentials)
        # Rendered lookup request -> (until when it is kept, its answer on the way or come).
        self._lookups: dict[tuple[Any, ...], tuple[float, asyncio.Future[Any]]] = {}

    async def aclose(self) -> None:
        await super().aclose()
        if self._credentials is not None:
            await self._credentials.aclose()

    async def fetch(self, out: RecordSink) -> None:
        config = self.config
        window = window_of(time.time(), config.lookback)
        tenants = config.tenants or (HttpJsonTenant(id=config.tenant or config.name),)
        poll = Poll(out)
        parts = []
        for tenant in tenants:
            # Unless the records name their own tenant, a request's tenant is theirs: a shard
            # that does not own it does not ask.
            if config.records.tenant is None and not out.wants(tenant.id):
                continue
            base = {"tenant": tenant.id, "vars": {**config.vars, **tenant.vars}, "window": window}
            eaches: list[Any] = [None]
            if config.listing.for_each is not None:
                found = config.listing.for_each(base)
                if not isinstance(found, list):
                    raise PollError(
                        Reason.INVALID_RESPONSE,
                        f"list.for_each ({config.listing.for_each.text}) is not a list, for {tenant.id}",
                    )
                eaches = found
            for each in eaches:
                scope = tenant.id if each is None else f"{tenant.id}/{as_text(each)}"
                context = {**base, "each": each}
                parts.append((scope, self._read(poll, context, scope)))
        await gather_parts(out, parts)

    async def _read(self, poll: Poll, context: dict[str, Any], scope: str) -> None:
        listing, fan_out = self.config.listing, self.config.fan_out
        item_context = dict(context)
        started: list[tuple[str, asyncio.Future[None]]] = []
        try:
            async for items in self._answers(listing, context, "list"):
                if listing.select is not None:
                    kept = []
                    for item in items:
                        item_context["item"] = item
                        if truthy(listing.select(item_context)):
                            kept.append(item)
                    items = kept
                if fan_out is None:  # the listed items are the records
                    await self._map(poll, context, None, items, scope)
                    continue
                for item in items:
                    fan_context = {**context, "item": item}
                    part_scope = f"{scope}{SCOPE_SEPARATOR}{_part_of(fan_out, fan_context)}"
                    part = self._fan_out(poll, fan_context, part_scope)
                    started.append((part_scope, asyncio.ensure_future(part)))
        except BaseException:
            await cancel(started for _, started in started)
            raise
        await gather_parts(poll.out, started)

    async def _fan_out(self, poll: Poll, context: dict[str, Any], scope: str) -> None:
        fan_out = self.config.fan_out
        assert fan_out is not None
        async for records in self._answers(fan_out, context, "fan_out"):
            await self._map(poll, context, context["item"], records, scope)

    async def _answers(
        self, request: Request, context: Mapping[str, Any], where: str
    ) -> AsyncIterator[list[Any]]:
        """The item lists of a request's answers, page after page."""
        paging = request.paging
        page = paging.first() if paging is not None else {}
        link: str | None = None
        cursors: set[str] = set()
        pages = paging.max_pages if paging is not None else 1
        for _ in range(pages):
            try:
                path, kwargs = request.render({**context, "page": page})
            except Missing as exc:
                raise PollError(Reason.INVALID_RESPONSE, f"{where}: {exc.detail}") from None
            if link is None:
                method, url = request.method, path
            else:  # the link is the whole request but for the headers
                method, url, path = "GET", link, urlsplit(link).path
                kwargs = {"headers": kwargs["headers"]} if "headers" in kwargs else {}
            response = await self._request(method, url, **kwargs)
            what = f"{method} {path}"
            body = _json(response, what)
            if request.error_when is not None and truthy(request.error_when(body)):
                raise PollError(
                    Reason.HTTP_ERROR,
                    f"{what}: the answer says it failed ({where}.error_when: {request.error_when.text})",
                )
            assert request.items is not None
            items = request.items(body)
            if not isinstance(items, list):
                raise PollError(
                    Reason.INVALID_RESPONSE, f"{what}: {where}.items ({request.items.text}) is not a list"
                )
            yield items
            if paging is None:
                return
            if paging.style == "next_link":
                link = self._next_link(paging, body, response, what)
                if link is None:
                    return
                continue
            following = paging.following(page, items, body)
            if following is None:
                return
            if paging.style == "cursor":
                key = as_text(following["cursor"])
                if key in cursors:
                    raise PollError(
                        Reason.INVALID_RESPONSE, f"{what}: the cursor {key!r} came back: paging would not end"
                    )
                cursors.add(key)
            page = following
        raise PollError(Reason.INVALID_RESPONSE, f"{where}: more than {pages} pages (paging.max_pages)")

    def _next_link(self, paging: Paging, body: Any, response: Response, what: str) -> str | None:
        found = paging.next(body) if paging.next is not None else response.links.get("next")
        if found is None or found == "":
            return None
        if not isinstance(found, str):
            raise PollError(Reason.INVALID_RESPONSE, f"{what}: the next link is not text")
        link = joined(self.config.base_url, found)
        # Credentials go with every request: only to the configured server.
        if urlsplit(link)[:2] != self._origin:
            raise PollError(Reason.INVALID_RESPONSE, f"{what}: the next link leaves {self.config.base_url}")
        return link

    async def _request(self, method: str, url: str, **kwargs: Any) -> Response:
        if self._token is None:
            return await self._http.request(method, url, **kwargs)
        return await self._token.bearer(self._http, method, url, **kwargs)

    async def _map(
        self, poll: Poll, context: dict[str, Any], item: Any, entries: list[Any], scope: str
    ) -> None:
        """Each entry as a record of ``scope``; of the listed ``item``, or (None) each its own."""
        mapping = self.config.records
        own = item is None
        # A fan-out's context holds its item already; ``record`` and ``lookup`` are set before
        # anything reads them (a record without lookups reads ``lookup`` as null).
        record_context = dict(context)
        if mapping.select is not None:
            kept = []
            for entry in entries:
                record_context["record"] = entry
                if own:
                    record_context["item"] = entry
                if truthy(mapping.select(record_context)):
                    kept.append(entry)
            entries = kept
        if not entries:
            return
        lookups = bool(self.config.lookups)
        if lookups and not own:
            record_context["lookup"] = await self._looked_up(poll, dict(context))
        tenant_of, platform_of = mapping.tenant, mapping.platform
        identity_of = mapping.identity
        tenant, platform = context["tenant"], self.config.platform or ""
        for entry in entries:
            record_context["record"] = entry
            if own:
                record_context["item"] = entry
                if lookups:
                    record_context["lookup"] = await self._looked_up(poll, {**context, "item": entry})
            if tenant_of is not None:
                tenant = _required(tenant_of, record_context, "records.tenant")
            if platform_of is not None:
                platform = _required(platform_of, record_context, "records.platform")
            identity = (tenant, *(_identity_part(e, record_context) for e in identity_of))
            message = text_of(mapping.message(record_context))
            reported = mapping.error_type(record_context) if mapping.error_type is not None else None
            failed_at = to_epoch(mapping.failed_at(record_context)) if mapping.failed_at is not None else None
            name = text_of(mapping.name(record_context)) if mapping.name is not None else ""
            location = text_of(mapping.location(record_context)) if mapping.location is not None else ""
            reported_type = reported if isinstance(reported, str) else None
            if mapping.derive_retries:
                seen = poll.repeats(tenant)
                seen.add(identity, platform, message, failed_at, scope, name, location, reported_type)
                continue
            retries = as_count(mapping.retry_count(record_context)) if mapping.retry_count is not None else 0
            poll.out.add(
                FailureRecord(
                    tenant,
                    platform,
                    identity,
                    message,
                    reported_type,
                    retries,
                    failed_at,
                    scope,
                    name,
                    location,
                )
            )

    async def _looked_up(self, poll: Poll, context: dict[str, Any]) -> dict[str, Any]:
        """Each lookup's value for one listed item, in order (a lookup may read earlier ones)."""
        found: dict[str, Any] = {}
        context["lookup"] = found
        # Kept for the whole poll that asked, however short ``cache_for``: each request is
        # made at most once a poll.
        now = poll.started
        for lookup in self.config.lookups:
            try:
                path, kwargs = lookup.render(context)
            except Missing:
                found[lookup.name] = None
                continue
            key = (lookup.name, path, repr(sorted(kwargs.items())))
            cached = self._lookups.get(key)
            if cached is None or cached[0] < now:
                answer = asyncio.ensure_future(self._lookup(lookup, path, kwargs))
                # Its error is read here even if the poll that asked has ended.
                answer.add_done_callback(lambda done: done.cancelled() or done.exception())
                cached = (now + lookup.cache_for, answer)
                self._lookups.pop(key, None)
                self._lookups[key] = cached
                while len(self._lookups) > LOOKUP_CACHE_SIZE:
                    del self._lookups[next(iter(self._lookups))]
            try:
                found[lookup.name] = await asyncio.shield(cached[1])
            except PollError as exc:
                # Not kept: the next item or poll asks again. Records read it as null.
                if self._lookups.get(key) is cached:
                    del self._lookups[key]
                poll.out.warn(f"lookup {lookup.name}: {exc}")
                found[lookup.name] = None
        return found

    async def _lookup(self, lookup: Lookup, path: str, kwargs: dict[str, Any]) -> Any:
        body = _json(await self._request(lookup.method, path, **kwargs), f"{lookup.method} {path}")
        return lookup.result(body) if lookup.result is not None else body


def _json(response: Response, what: str) -> Any:
    try:
        return response.json()
    except PollError as exc:
        raise PollError(exc.reason, f"{what}: {exc.detail}") from None


def _required(expression: Expression, context: Mapping[str, Any], where: str) -> str:
    value = expression(context)
    if value is None or value == "":
        raise PollError(Reason.INVALID_RESPONSE, f"{where}: {expression.text} is missing from a record")
    return as_text(value)


def _identity_part(expression: Expression, context: Mapping[str, Any]) -> str:
    """Empty text is a value, as the built-in kinds read an empty id; only null is missing."""
    value = expression(context)
    if value is None:
        raise PollError(
            Reason.INVALID_RESPONSE, f"records.identity: {expression.text} is missing from a record"
        )
    return as_text(value)


def _part_of(fan_out: FanOut, context: Mapping[str, Any]) -> str:
    """A listed item's part of the poll: its ``fan_out.scope``, else its request's path."""
    try:
        if fan_out.scope is not None:
            return fan_out.scope.text_of(context)
        first = fan_out.paging.first() if fan_out.paging is not None else {}
        return fan_out.path.path({**context, "page": first})
    except Missing as exc:
        raise PollError(Reason.INVALID_RESPONSE, f"fan_out: {exc.detail}") from None


def static_auth(config: HttpJsonConfig) -> dict[str, str]:
    """The headers of an authentication that never changes."""
    if config.auth == "bearer":
        return {"authorization": f"Bearer {config.secret('token')}"}
    if config.auth == "api_key":
        return {config.api_key_header: config.secret("api_key") or ""}
    if config.auth == "basic":
        return {"authorization": basic_authorization(config.username or "", config.secret("password") or "")}
    return {}
