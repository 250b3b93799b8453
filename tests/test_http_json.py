"""The ``http_json`` kind: the shipped examples read Rezolve and Unstructured exactly as the
built-in kinds do, and each part of the syntax (auth, paging, fan-out, lookups, errors) works
against a real HTTP server."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from exporter.config import ConfigError, build_settings
from exporter.pipeline.shard import shard_of
from exporter.records import Reason
from exporter.runtime import Exporter
from exporter.serving.failures import FailureIndex, Query, search
from exporter.simulators.adf import AdfSimulator, SimActivity, SimPipelineRun, seed_example
from exporter.simulators.base import SimRequest, SimResponse, Simulator, json_response
from exporter.simulators.commvault import CommvaultSimulator
from exporter.simulators.commvault import SimJob as CommvaultJob
from exporter.simulators.rezolve import RezolveFile, RezolveSimulator
from exporter.simulators.unstructured import SimJob, UnstructuredSimulator
from exporter.sources.queries import to_epoch
from tests.conftest import TENANT_A, TENANT_B, parse_exposition

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOW = time.time()


def example(file: str, **changes: Any) -> dict[str, Any]:
    """The one source of ``examples/<file>.yaml``, with ``changes`` (None removes a field)."""
    document = yaml.safe_load((EXAMPLES / f"{file}.yaml").read_text())
    [source] = document["sources"]
    for key, value in changes.items():
        if value is None:
            source.pop(key, None)
        else:
            source[key] = value
    return dict(source)


def without_source(labels: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    return frozenset((k, v) for k, v in labels if k != "source")


def failure_series(exporter: Exporter, source: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every series of one source that speaks of failures (those with a tenant), without the
    source label."""
    return {
        (name, without_source(labels)): value
        for (name, labels), value in parse_exposition(exporter.snapshot.text.decode()).items()
        if ("source", source) in labels and any(k == "tenant" for k, _ in labels)
    }


def failure_items(exporter: Exporter, source: str) -> list[dict[str, Any]]:
    lanes = FailureIndex().refresh(exporter.states)
    page = search(lanes, Query(sources=(source,)), everything=True)
    return [{k: v for k, v in item.items() if k != "source"} for item in page.items()]


def up_and_errors(exporter: Exporter, source: str) -> tuple[float, dict[str, float]]:
    samples = parse_exposition(exporter.snapshot.text.decode())
    errors = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "ingestion_source_poll_errors_total" and ("source", source) in labels and value
    }
    return samples[("ingestion_source_up", frozenset({("source", source)}))], errors


def assert_same(exporter: Exporter) -> None:
    native, configured = failure_series(exporter, "native"), failure_series(exporter, "configured")
    assert native and native == configured
    items = failure_items(exporter, "native")
    assert items and items == failure_items(exporter, "configured")
    assert up_and_errors(exporter, "native") == up_and_errors(exporter, "configured")


def refused_alike(exporter: Exporter) -> None:
    """Both sources were refused their credentials, and kept their series alike."""
    assert_same(exporter)
    up, errors = up_and_errors(exporter, "configured")
    assert (up, errors["auth"]) == (0, 1)


def polled_in_steps(document: dict[str, Any], steps: list[Callable[[Exporter], None]]) -> Exporter:
    """Poll, then for each step change the world, poll again and let the step check. The
    exporter's clock stands still during a poll, so that both sources see a file first at the
    same moment."""
    clock = [NOW]
    exporter = Exporter(build_settings(document, {}), clock=lambda: clock[0])

    async def run() -> None:
        try:
            for step in steps:
                await exporter.poll_all()
                step(exporter)
                clock[0] += 60
        finally:
            await exporter.aclose()

    asyncio.run(run())
    return exporter


SimT = TypeVar("SimT", UnstructuredSimulator, CommvaultSimulator)


def serving(sim: SimT, jobs: list[Any]) -> Iterator[SimT]:
    """A started simulator given its jobs, stopped when the test ends."""
    for job in jobs:
        sim.add_job(job)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def rezolve_world() -> Iterator[RezolveSimulator]:
    sim = RezolveSimulator(token="equivalence-token").start()
    sim.add_tenant(TENANT_A, "acme.rezolve.ai")
    sim.add_tenant(TENANT_B, "globex.rezolve.ai")
    files = [
        (
            TENANT_A,
            "sharepoint",
            RezolveFile("f1", "Q3 plan.docx", "PARSE_ERROR", "unparseable", NOW - 60, 0),
        ),
        (TENANT_A, "sharepoint", RezolveFile("f2", "big.pdf", "FILE_TOO_LARGE", "over 100 MB", NOW - 120, 3)),
        (TENANT_A, "confluence", RezolveFile("42", "Runbook", "not a type", "Access is denied", NOW - 30, 1)),
        (TENANT_B, "servicenow", RezolveFile("kb7", "KB0007", "TIMEOUT", "timed out", NOW - 10, 12)),
    ]
    for tenant, platform, file in files:
        sim.put(tenant, platform, file)
    try:
        yield sim
    finally:
        sim.stop()


def test_the_rezolve_example_exports_what_the_rezolve_kind_exports(rezolve_world: RezolveSimulator) -> None:
    sim = rezolve_world
    tenants = [
        {
            "id": TENANT_A,
            "vars": {"rezolve_domain": "acme.rezolve.ai", "platforms": ["sharepoint", "confluence"]},
        },
        {"id": TENANT_B, "vars": {"rezolve_domain": "globex.rezolve.ai", "platforms": ["servicenow", "web"]}},
    ]
    native = {
        "name": "native",
        "kind": "rezolve",
        "base_url": sim.url,
        "token": sim.token,
        "tenants": [
            {
                "tenant_id": t["id"],
                "rezolve_domain": t["vars"]["rezolve_domain"],
                "platforms": t["vars"]["platforms"],
            }
            for t in tenants
        ],
    }
    configured = example("rezolve", name="configured", base_url=sim.url, token=sim.token, token_file=None)
    configured["tenants"] = tenants

    def resolve_and_repeat(exporter: Exporter) -> None:
        assert_same(exporter)
        sim.remove(TENANT_A, "sharepoint", "f1")
        sim.put(TENANT_A, "sharepoint", RezolveFile("f2", "big.pdf", "FILE_TOO_LARGE", "over", NOW - 5, 4))
        sim.put(TENANT_B, "web", RezolveFile("w1", "index.html", "NETWORK_ERROR", "reset", NOW - 5, 0))

    def refuse_the_token(exporter: Exporter) -> None:
        assert_same(exporter)
        assert len(failure_items(exporter, "configured")) == 4
        sim.token = "revoked"

    polled_in_steps({"sources": [native, configured]}, [resolve_and_repeat, refuse_the_token, refused_alike])


@pytest.fixture
def unstructured_world() -> Iterator[UnstructuredSimulator]:
    sim = UnstructuredSimulator(api_key="equivalence-key").start()
    s3 = sim.add_workflow("kb", "S3 Bucket")
    bare = sim.add_workflow("uploads", None)  # no source connector: platform "unstructured"
    jobs = [
        SimJob(
            "j1", s3, "FAILED", NOW - 3000, [("a.pdf", "PDF file is corrupted"), ("b.docx", "Access denied")]
        ),
        SimJob("j2", s3, "COMPLETED", NOW - 2000, [("a.pdf", "PDF file is corrupted (again)")]),
        SimJob("j3", s3, "failed", NOW - 1000, [("a.pdf", "Unsupported file type")]),  # lower case
        SimJob("j4", bare, "COMPLETED", NOW - 500, [("c.txt", "Rate limit exceeded")]),
        SimJob("j5", bare, "IN_PROGRESS", NOW - 100, [("d.txt", "still going")]),  # not finished
        SimJob("j6", s3, "FAILED", NOW - 3 * 86400, [("old.pdf", "Too old to count")]),  # beyond lookback
        SimJob("j7", bare, "COMPLETED", NOW - 400, []),  # finished, without failures
    ]
    yield from serving(sim, jobs)


def test_the_unstructured_example_exports_what_the_unstructured_kind_exports(
    unstructured_world: UnstructuredSimulator,
) -> None:
    sim = unstructured_world
    native = sim.source_config("native", tenant="acme", lookback="1d")
    configured = example(
        "unstructured",
        name="configured",
        base_url=sim.url,
        api_key=sim.api_key,
        api_key_file=None,
        tenant="acme",
    )

    def repeat_and_resolve(exporter: Exporter) -> None:
        assert_same(exporter)
        items = {item["name"]: item for item in failure_items(exporter, "configured")}
        # Three jobs listed a.pdf: one record, two retries, the latest job's message.
        assert items["a.pdf"]["retry_count"] == 2 and items["a.pdf"]["message"] == "Unsupported file type"
        assert {item["platform"] for item in items.values()} == {"s3_bucket", "unstructured"}
        with sim.lock:
            del sim.jobs["j1"]
            sim.jobs["j8"] = SimJob(
                "j8", sim.jobs["j4"].workflow_id, "FAILED", NOW - 50, [("c.txt", "again")]
            )

    def fail_one_job(exporter: Exporter) -> None:
        assert_same(exporter)
        sim.inject("/jobs/j4/failed-files$", status=500, body='{"detail": "Internal Server Error"}')

    def refuse_the_key(exporter: Exporter) -> None:
        assert_same(exporter)  # the failed job's previous records are kept alike
        assert up_and_errors(exporter, "configured") == (0, {"http_error": 1})
        sim.clear_faults()
        sim.api_key = "revoked"

    polled_in_steps(
        {"sources": [native, configured]}, [repeat_and_resolve, fail_one_job, refuse_the_key, refused_alike]
    )


@pytest.fixture
def commvault_world() -> Iterator[CommvaultSimulator]:
    sim = CommvaultSimulator().start()
    jobs = [
        CommvaultJob(
            101, "Windows File System", "fs01", "default", NOW - 3000, [(r"C:\Data\q3.xlsx", "Access denied")]
        ),
        CommvaultJob(
            102, "Windows File System", "fs01", "default", NOW - 2000, [(r"C:\Data\q3.xlsx", "In use")]
        ),
        CommvaultJob(
            103,
            "Linux File System",
            "lx01",
            "home",
            NOW - 1500,
            [("/home/a/.cache/x", "Gone"), ("/etc/shadow", ""), ("", "No path")],
        ),
        CommvaultJob(104, "SQL Server", "db01", "main", NOW - 1000, [], status="Completed"),  # no failures
        CommvaultJob(
            105, "Windows File System", "fs01", "default", NOW - 500, [(r"C:\Data\q3.xlsx", "Locked")]
        ),
        CommvaultJob(
            106,
            "Windows File System",
            "fs02",
            "default",
            NOW - 400,
            [("C:\\Temp\\", "Hidden")],
            visible=False,
        ),
        CommvaultJob(
            107, "Windows File System", "fs02", "default", NOW - 3 * 86400, [(r"C:\Old", "Too old")]
        ),
    ]
    yield from serving(sim, jobs)


def test_the_commvault_example_exports_what_the_commvault_kind_exports(
    commvault_world: CommvaultSimulator,
) -> None:
    """Paged two jobs a page (three pages), a job's items fanned out, an item failing in three
    jobs, a job that cannot be read, then the token refused."""
    sim = commvault_world
    token = sim.issue_token()
    native = {
        "name": "native",
        "kind": "commvault",
        "base_url": sim.url,
        "authtoken": token,
        "tenant": "backup",
        "page_size": 2,
    }
    configured = example("commvault", name="configured", base_url=sim.url, api_key=token, tenant="backup")
    configured.pop("api_key_file")
    configured["list"]["paging"]["limit"] = 2

    def repeat_and_resolve(exporter: Exporter) -> None:
        assert_same(exporter)
        # Both read offsets 0, 2, 4 of the five finished jobs of the window.
        offsets = sorted(request.headers["offset"] for request in sim.calls("^/Job$"))
        assert offsets == ["0", "0", "2", "2", "4", "4"]
        items = {item["name"]: item for item in failure_items(exporter, "configured")}
        assert items["q3.xlsx"]["retry_count"] == 2 and items["q3.xlsx"]["message"] == "Locked"
        assert items["q3.xlsx"]["location"] == r"fs01/default:C:\Data\q3.xlsx"
        assert {item["platform"] for item in items.values()} == {"windows_file_system", "linux_file_system"}
        assert "Temp" not in str(items)  # an invisible job is not read
        with sim.lock:
            del sim.jobs[101]
            sim.jobs[108] = CommvaultJob(
                108, "SQL Server", "db01", "main", NOW - 50, [("db01\\main\\log", "Full")]
            )

    def fail_one_job(exporter: Exporter) -> None:
        assert_same(exporter)
        items = {item["name"]: item for item in failure_items(exporter, "configured")}
        assert items["q3.xlsx"]["retry_count"] == 1 and "log" in items
        sim.inject("/Job/103/FailedItems$", status=500, body='{"errorMessage": "Internal Server Error"}')

    def refuse_the_token(exporter: Exporter) -> None:
        assert_same(exporter)  # the failed job's previous records are kept alike
        assert up_and_errors(exporter, "configured") == (0, {"http_error": 1})
        assert "x" in {item["name"] for item in failure_items(exporter, "configured")}
        sim.clear_faults()
        sim.expire_tokens()

    polled_in_steps(
        {"sources": [native, configured]}, [repeat_and_resolve, fail_one_job, refuse_the_token, refused_alike]
    )


def test_the_examples_pass_check_as_shipped(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    shipped = (
        ("rezolve", "token_file"),
        ("unstructured", "api_key_file"),
        ("azure-data-factory", "client_secret_file"),
        ("commvault", "api_key_file"),
    )
    for name, secret in shipped:
        document = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
        secret_file = tmp_path / f"{name}.secret"
        secret_file.write_text("a-secret-long-enough-to-pass\n")
        document["sources"][0][secret] = str(secret_file)
        result = run_cli("--check", config=copy.deepcopy(document), tmp_path=tmp_path)
        assert result.code == 0, result.stderr


def test_reasons_follow_the_kind_rules(unstructured_world: UnstructuredSimulator) -> None:
    sim = unstructured_world
    configured = example(
        "unstructured", name="configured", base_url=sim.url, api_key=sim.api_key, api_key_file=None
    )
    sim.inject("/failed-files$", status=200, body='{"failed_files": [{"error": "no document"}]}')
    state = polled(configured).states["configured"]
    assert state.last_error is not None and state.last_error.reason is Reason.INVALID_RESPONSE
    assert "records.identity: record.document is missing" in state.last_error.detail


class RunsApi(Simulator):
    """A made-up failures API with every paging style: ``/offset``, ``/pages``, ``/cursor``,
    ``/linked`` (a next link in the body) and ``/link-header`` list the same failed runs, 10 at
    most a page; ``/runs/{id}/errors`` lists a run's failed files; ``/oauth/token`` issues
    tokens. Requests without the expected headers get 401."""

    def __init__(self, runs: int = 25) -> None:
        super().__init__()
        self.runs = [
            {
                "id": f"r{i}",
                "file": f"f{i}.pdf",
                "error": f"Failed to parse f{i}.pdf",
                "at": 1_796_464_800_000 + i,
            }
            for i in range(runs)
        ]
        self.expected: dict[str, str] = {}
        self.tokens: list[str] = []
        self.token_lifetime = 3600
        self.route("GET", "/offset$", self._offset)
        self.route("GET", "/pages$", self._pages)
        self.route("GET", "/cursor$", self._cursor)
        self.route("GET", "/linked$", self._linked)
        self.route("GET", "/link-header$", self._link_header)
        self.route("GET", r"/runs/(?P<id>[^/]+)/errors$", self.errors)
        self.route("POST", "/oauth/token$", self._token)

    def _refused(self, request: SimRequest) -> SimResponse | None:
        for name, value in self.expected.items():
            if request.headers.get(name) != value:
                return json_response(401, {"error": "unauthorized"})
        if self.tokens and request.headers.get("authorization") != f"Bearer {self.tokens[-1]}":
            return json_response(401, {"error": "invalid_token"})
        return None

    def _slice(self, start: int, size: int) -> list[dict[str, Any]]:
        return self.runs[start : start + min(size, 10)]

    def _offset(self, request: SimRequest) -> SimResponse:
        start, size = int(request.arg("offset") or 0), int(request.arg("limit") or 10)
        return self._refused(request) or json_response(
            200, {"runs": self._slice(start, size), "total": len(self.runs)}
        )

    def _pages(self, request: SimRequest) -> SimResponse:
        page, size = int(request.arg("page") or 1), int(request.arg("size") or 10)
        return self._refused(request) or json_response(200, {"data": self._slice((page - 1) * size, size)})

    def _cursor(self, request: SimRequest) -> SimResponse:
        start = int((request.arg("after") or "c0")[1:])
        following = f"c{start + 10}" if start + 10 < len(self.runs) else None
        return self._refused(request) or json_response(
            200, {"items": self._slice(start, 10), "next": following}
        )

    def _linked(self, request: SimRequest) -> SimResponse:
        start = int(request.arg("start") or 0)
        following = f"{self.url}/linked?start={start + 10}" if start + 10 < len(self.runs) else None
        body = {"items": self._slice(start, 10), "links": {"next": following}}
        return self._refused(request) or json_response(200, body)

    def _link_header(self, request: SimRequest) -> SimResponse:
        start = int(request.arg("start") or 0)
        headers = {}
        if start + 10 < len(self.runs):
            headers["Link"] = f'</link-header?start={start + 10}>; rel="next", </link-header>; rel="first"'
        return self._refused(request) or json_response(200, self._slice(start, 10), headers)

    def errors(self, request: SimRequest) -> SimResponse:
        run = next((r for r in self.runs if r["id"] == request.match["id"]), None)
        if run is None:
            return json_response(404, {"error": "no such run"})
        return self._refused(request) or json_response(
            200, {"errors": [{"path": run["file"], "reason": run["error"], "code": run.get("code")}]}
        )

    def _token(self, request: SimRequest) -> SimResponse:
        form = dict(pair.split("=", 1) for pair in request.body.decode().split("&"))
        if form.get("grant_type") != "client_credentials" or form.get("client_secret") != "s3cret-value":
            return json_response(400, {"error": "invalid_client", "error_description": "bad client"})
        self.tokens.append(f"issued-token-{len(self.tokens)}")
        return json_response(200, {"access_token": self.tokens[-1], "expires_in": self.token_lifetime})


@pytest.fixture
def runs_api() -> Iterator[RunsApi]:
    api = RunsApi().start()
    try:
        yield api
    finally:
        api.stop()


def runs_source(api: RunsApi, listing: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An http_json source whose listed items are the failed runs."""
    return {
        "name": "runs",
        "kind": "http_json",
        "base_url": api.url,
        "platform": "runs",
        "list": {"items": "@", **listing},
        "records": {
            "identity": ["record.id"],
            "message": "record.error",
            "name": "record.file",
            "failed_at": "record.at",
        },
        **extra,
    }


def polled(*sources: dict[str, Any], **top: Any) -> Exporter:
    exporter = Exporter(build_settings({"sources": list(sources), **top}, {}))

    async def run() -> None:
        try:
            await exporter.poll_all()
        finally:
            await exporter.aclose()

    asyncio.run(run())
    return exporter


def polled_twice(source: dict[str, Any]) -> Exporter:
    return polled_in_steps({"sources": [source]}, [lambda _: None, lambda _: None])


def serving_owners(api: RunsApi) -> dict[str, Any]:
    """A lookup of each run's owner, from an ``/owners?run=`` the API now answers."""
    api.route("GET", "/owners$", lambda r: json_response(200, {"owner": f"team-{r.arg('run')}"}))
    return {"name": "owner", "path": "/owners", "query": {"run": "{item.id}"}, "result": "owner"}


def record_names(exporter: Exporter, source: str = "runs") -> list[str]:
    return sorted((item["name"] for item in failure_items(exporter, source)), key=lambda n: int(n[1:-4]))


ALL_RUNS = [f"f{i}.pdf" for i in range(25)]
# The runs listed 10 a page by offset.
BY_OFFSET = {
    "path": "/offset",
    "query": {"offset": "{page.offset}"},
    "items": "runs",
    "paging": {"style": "offset", "limit": 10},
}


@pytest.mark.parametrize(
    ("path", "listing", "requests"),
    [
        (
            "/offset",
            {
                "query": {"offset": "{page.offset}", "limit": "{page.limit}"},
                "items": "runs",
                "paging": {"style": "offset", "limit": 10},
            },
            3,
        ),
        # With the total: the API serving fewer than asked does not end the paging early.
        (
            "/offset",
            {
                "query": {"offset": "{page.offset}", "limit": "{page.limit}"},
                "items": "runs",
                "paging": {"style": "offset", "limit": 50, "total": "total"},
            },
            3,
        ),
        (
            "/pages",
            {
                "query": {"page": "{page.number}", "size": "{page.limit}"},
                "items": "data",
                "paging": {"style": "page", "limit": 10},
            },
            3,
        ),
        (
            "/cursor",
            {
                "query": {"after": "{page.cursor}"},
                "items": "items",
                "paging": {"style": "cursor", "cursor": "next"},
            },
            3,
        ),
        ("/linked", {"items": "items", "paging": {"style": "next_link", "next": "links.next"}}, 3),
        ("/link-header", {"paging": {"style": "next_link"}}, 3),
    ],
    ids=["offset", "offset-with-total", "page", "cursor", "next-link-field", "link-header"],
)
def test_each_paging_style_reads_every_page(
    runs_api: RunsApi, path: str, listing: dict[str, Any], requests: int
) -> None:
    exporter = polled(runs_source(runs_api, {"path": path, **listing}))
    assert record_names(exporter) == ALL_RUNS
    assert len(runs_api.calls(f"^{path}$")) == requests
    if path == "/cursor":  # the first request has no cursor: the parameter is left out
        assert [c.arg("after") for c in runs_api.calls("^/cursor$")] == [None, "c10", "c20"]


def test_paging_stops_at_max_pages_and_fails_the_list(runs_api: RunsApi) -> None:
    listing = {
        "path": "/cursor",
        "query": {"after": "{page.cursor}"},
        "items": "items",
        "paging": {"style": "cursor", "cursor": "next", "max_pages": 2},
    }
    exporter = polled(runs_source(runs_api, listing))
    error = exporter.states["runs"].last_error
    assert error is not None and error.reason is Reason.INVALID_RESPONSE
    assert "more than 2 pages (paging.max_pages)" in error.detail
    assert len(runs_api.calls("^/cursor$")) == 2


def test_a_cursor_that_comes_back_ends_the_read_as_invalid(runs_api: RunsApi) -> None:
    runs_api.inject("^/cursor$", status=200, body='{"items": [], "next": "c0"}')
    listing = {
        "path": "/cursor",
        "query": {"after": "{page.cursor}"},
        "items": "items",
        "paging": {"style": "cursor", "cursor": "next"},
    }
    error = polled(runs_source(runs_api, listing)).states["runs"].last_error
    assert error is not None and "the cursor 'c0' came back" in error.detail


def test_a_next_link_to_another_server_is_not_followed(runs_api: RunsApi) -> None:
    runs_api.inject(
        "^/linked$", status=200, body='{"items": [], "links": {"next": "https://elsewhere.example/x"}}'
    )
    listing = {"path": "/linked", "items": "items", "paging": {"style": "next_link", "next": "links.next"}}
    error = polled(runs_source(runs_api, listing)).states["runs"].last_error
    assert error is not None and error.reason is Reason.INVALID_RESPONSE and "leaves" in error.detail


def test_fan_out_reads_each_listed_items_records_with_the_items_fields(runs_api: RunsApi) -> None:
    source = runs_source(
        runs_api,
        {**BY_OFFSET, "select": "to_epoch(item.at) >= `1796464800.010`"},
        fan_out={"path": "/runs/{item.id}/errors", "items": "errors"},
        records={
            "identity": ["item.id", "record.path"],
            "message": "record.reason",
            "name": "record.path",
            "location": "item.id",
            "failed_at": "item.at",
        },
    )
    exporter = polled(source)
    items = failure_items(exporter, "runs")
    assert sorted(item["name"] for item in items) == sorted(f"f{i}.pdf" for i in range(10, 25))
    assert len(runs_api.calls("/errors$")) == 15  # the selected runs only
    first = next(item for item in items if item["name"] == "f10.pdf")
    assert (first["location"], first["failed_at"]) == ("r10", 1_796_464_800.01)


def test_a_failed_fan_out_part_keeps_its_previous_records_and_only_those(runs_api: RunsApi) -> None:
    source = runs_source(
        runs_api,
        BY_OFFSET,
        fan_out={"path": "/runs/{item.id}/errors", "items": "errors"},
        records={"identity": ["item.id", "record.path"], "message": "record.reason", "name": "record.path"},
    )
    exporter = Exporter(build_settings({"sources": [source]}, {}))

    async def run() -> None:
        try:
            await exporter.poll_all()
            runs_api.inject("/runs/r3/errors$", status=500, body="{}")
            del runs_api.runs[5]  # r5: resolved
            await exporter.poll_all()
        finally:
            await exporter.aclose()

    asyncio.run(run())
    names = sorted(item["name"] for item in failure_items(exporter, "runs"))
    assert "f3.pdf" in names and "f5.pdf" not in names and len(names) == 24


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"auth": "bearer", "token": "a-bearer-token"}, {"authorization": "Bearer a-bearer-token"}),
        (
            {"auth": "api_key", "api_key": "k-123456789", "api_key_header": "x-api-key"},
            {"x-api-key": "k-123456789"},
        ),
        (
            {"auth": "basic", "username": "svc", "password": "p@ss:word"},
            {"authorization": "Basic c3ZjOnBAc3M6d29yZA=="},
        ),
    ],
    ids=["bearer", "api_key", "basic"],
)
def test_static_authentication_is_sent_with_every_request(
    runs_api: RunsApi, auth: dict[str, Any], expected: dict[str, str]
) -> None:
    runs_api.expected = expected
    assert record_names(polled(runs_source(runs_api, BY_OFFSET, **auth))) == ALL_RUNS
    runs_api.expected = {k: v + "x" for k, v in expected.items()}
    assert up_and_errors(polled(runs_source(runs_api, BY_OFFSET, **auth)), "runs") == (0, {"auth": 1})


def oauth_source(api: RunsApi, secret: str = "s3cret-value") -> dict[str, Any]:
    return runs_source(
        api,
        BY_OFFSET,
        auth="oauth2",
        token_url=f"{api.url}/oauth/token",
        client_id="exporter",
        client_secret=secret,
        scopes=["runs.read", "runs.list"],
    )


def test_oauth2_obtains_a_token_once_and_renews_it_when_refused(runs_api: RunsApi) -> None:
    exporter = Exporter(build_settings({"sources": [oauth_source(runs_api)]}, {}))

    async def run() -> None:
        try:
            await exporter.poll_all()
            assert runs_api.tokens == ["issued-token-0"]  # one token for the three pages
            runs_api.tokens.append("rotated")  # the service no longer takes issued-token-0
            await exporter.poll_all()
        finally:
            await exporter.aclose()

    asyncio.run(run())
    assert runs_api.tokens == ["issued-token-0", "rotated", "issued-token-2"]
    assert record_names(exporter) == ALL_RUNS
    form = runs_api.calls("/oauth/token$")[0].body.decode()
    assert "scope=runs.read+runs.list" in form and "client_id=exporter" in form
    # Each issued token is a secret from then on, wherever it would be written.
    assert (
        exporter.redactor.scrub("Bearer issued-token-0, Bearer issued-token-2")
        == "Bearer <redacted>, Bearer <redacted>"
    )


def test_oauth2_may_send_the_client_as_http_basic(runs_api: RunsApi) -> None:
    source = {**oauth_source(runs_api), "client_id": "exporter:one", "client_auth": "basic"}
    runs_api.route("POST", "/basic-token$", lambda request: basic_token(runs_api, request))
    source["token_url"] = f"{runs_api.url}/basic-token"
    assert record_names(polled(source)) == ALL_RUNS
    [asked] = runs_api.calls("/basic-token$")
    # Each half form-encoded, then joined (RFC 6749, section 2.3.1): the colon of the id is %3A.
    assert (
        asked.headers["authorization"] == "Basic " + base64.b64encode(b"exporter%3Aone:s3cret-value").decode()
    )
    assert "client_secret" not in asked.body.decode()


def basic_token(api: RunsApi, request: SimRequest) -> SimResponse:
    expected = "Basic " + base64.b64encode(b"exporter%3Aone:s3cret-value").decode()
    if request.headers.get("authorization") != expected:
        return json_response(401, {"error": "invalid_client"})
    api.tokens.append(f"issued-token-{len(api.tokens)}")
    return json_response(200, {"access_token": api.tokens[-1], "expires_in": "3599"})


def test_oauth2_refused_credentials_are_auth_and_the_secret_stays_out_of_sight(runs_api: RunsApi) -> None:
    exporter = polled(oauth_source(runs_api, secret="wrong-secret-value"))
    assert up_and_errors(exporter, "runs") == (0, {"auth": 1})
    error = exporter.states["runs"].last_error
    assert error is not None and "refused the credentials" in error.detail
    assert "wrong-secret-value" not in exporter.snapshot.text.decode()


def test_error_when_fails_the_list_as_http_error(rezolve_world: RezolveSimulator) -> None:
    sim = rezolve_world
    sim.inject("/failed-files$", status=200, body='{"success": false, "message": "index unavailable"}')
    configured = example("rezolve", name="configured", base_url=sim.url, token=sim.token, token_file=None)
    error = polled(configured).states["configured"].last_error
    assert error is not None and error.reason is Reason.HTTP_ERROR
    assert "list.error_when: success == `false`" in error.detail


def test_a_lookup_that_fails_is_null_for_the_records_and_a_warning(
    unstructured_world: UnstructuredSimulator,
) -> None:
    sim = unstructured_world
    sim.inject("/api/v1/sources/", status=503, body="{}")
    configured = example(
        "unstructured", name="configured", base_url=sim.url, api_key=sim.api_key, api_key_file=None
    )
    exporter = polled(configured)
    assert {item["platform"] for item in failure_items(exporter, "configured")} == {"unstructured"}
    state = exporter.states["configured"]
    assert state.last_error is None and any("lookup connector" in w for w in state.warnings)


def test_only_the_tenants_of_this_shard_are_asked(rezolve_world: RezolveSimulator) -> None:
    sim = rezolve_world
    # A source name under which the two tenants fall to different shards of two.
    configured = example("rezolve", name="json", base_url=sim.url, token=sim.token, token_file=None)
    configured["tenants"] = [
        {"id": t, "vars": {"rezolve_domain": "d", "platforms": ["sharepoint"]}} for t in (TENANT_A, TENANT_B)
    ]
    assert shard_of("json", TENANT_A, 2) != shard_of("json", TENANT_B, 2)
    for tenant in (TENANT_A, TENANT_B):  # the one skipped first, then second
        sim.requests.clear()
        polled(configured, shard={"index": shard_of("json", tenant, 2), "total": 2})
        assert {call.headers["x-tenantid"] for call in sim.calls("/failed-files$")} == {tenant}


def test_check_names_each_bad_template_and_expression_by_its_path(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    source = {
        "name": "bad",
        "kind": "http_json",
        "base_url": "http://127.0.0.1:1",
        "list": {"path": "/jobs/{itme.id}", "items": "data.["},
        "fan_out": {"path": "/jobs/{item.id}/files", "items": "files", "query": {"since": "{window.start"}},
        "records": {"identity": ["record.id"], "message": "nope(record.msg)", "platform": "'x'"},
    }
    result = run_cli("--check", config={"sources": [source]}, tmp_path=tmp_path)
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "sources[0].list.path: 'itme.id' reads itme, which is not here; it may read each, page, tenant, vars, window",
        'sources[0].list.items: not a JMESPath expression: Invalid jmespath expression: Incomplete expression: "data.[" ^',
        "sources[0].fan_out.query: since: the '{' at 0 is not closed: write '{{' for a brace",
        "sources[0].records.message: 'nope(record.msg)' calls no such function: nope",
    ]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            {"auth": "bearer"},
            "sources[0].token: field required with auth: bearer: give token (or token_file)",
        ),
        (
            {"auth": "bearer", "token": "t" * 20, "api_key": "k" * 20},
            "sources[0].api_key: only read with auth: api_key",
        ),
        (
            {"list": {"path": "/runs", "items": "@", "paging": {"style": "cursor", "cursor": "next"}}},
            "sources[0].list.paging: style cursor needs {page.cursor} in the request",
        ),
        (
            {"list": {"path": "/runs", "items": "@", "paging": {"style": "offset", "cursor": "next"}}},
            "sources[0].list.paging.cursor: only read with style: cursor",
        ),
        (
            {"records": {"identity": ["record.id"], "message": "record.m"}, "platform": None},
            "sources[0].records: give records.platform, or the source's platform",
        ),
        (
            {"records": {"identity": ["record.id"], "message": "record.m", "derive_retries": True}},
            "sources[0].records: derive_retries counts the listed items (runs) a record is in: it needs fan_out",
        ),
        (
            {"tenant": "acme", "tenants": [{"id": "globex"}]},
            "sources[0].tenants: give tenant or tenants, not both",
        ),
    ],
)
def test_check_names_each_inconsistent_field(tmp_path: Path, change: dict[str, Any], line: str) -> None:
    from tests.conftest import run_cli

    source: dict[str, Any] = {
        "name": "bad",
        "kind": "http_json",
        "base_url": "http://127.0.0.1:1",
        "platform": "runs",
        "list": {"path": "/runs", "items": "@"},
        "records": {"identity": ["record.id"], "message": "record.m"},
    }
    source.update(change)
    source = {key: value for key, value in source.items() if value is not None}
    result = run_cli("--check", config={"sources": [source]}, tmp_path=tmp_path)
    assert (result.code, result.stderr.splitlines()) == (2, [line])


@pytest.fixture
def adf() -> Iterator[AdfSimulator]:
    sim = AdfSimulator(page_size=2).start()  # small pages: both levels page
    try:
        yield sim
    finally:
        sim.stop()


def adf_source(sim: AdfSimulator) -> dict[str, Any]:
    """The worked example, pointed at the simulator for both Azure and its token service."""
    return example(
        "azure-data-factory",
        base_url=sim.url,
        token_url=f"{sim.url}/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token",
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        client_secret_file=None,
    )


def test_the_azure_data_factory_example_counts_failed_activities_and_their_retries(adf: AdfSimulator) -> None:
    seed_example(adf, NOW)
    copies = [
        SimActivity(f"Copy {name}", "Copy", "Failed", "2200", f"The file '{name}.pdf' does not exist.")
        for name in "abc"
    ]
    adf.add_run(SimPipelineRun("load-docs", "Failed", NOW - 700, NOW - 600, copies))
    adf.add_run(
        SimPipelineRun("load-docs", "Failed", NOW - 3 * 86400, NOW - 3 * 86400 + 60, copies[:1])
    )  # too old
    exporter = polled(adf_source(adf))

    items = {item["name"]: item for item in failure_items(exporter, "adf-prod")}
    assert set(items) == {"Copy invoices", "Lookup watermark", "Copy a", "Copy b", "Copy c"}  # no ForEach
    invoices = items["Copy invoices"]
    assert (invoices["retry_count"], invoices["location"], invoices["error_type"]) == (
        2,
        "ingest-invoices",
        "NOT_FOUND",
    )
    assert invoices["id"] == "data-platform/ingest-invoices/Copy invoices"
    assert invoices["failed_at"] == pytest.approx(
        NOW - 2 * 3600 + 31, abs=0.01
    )  # the latest run's copy, its second activity
    assert items["Lookup watermark"]["error_type"] == "TIMEOUT"
    gauges = failure_series(exporter, "adf-prod")
    labels = {"tenant": "data-platform", "platform": "azure_data_factory", "error_type": "NOT_FOUND"}
    assert gauges[("ingestion_failed_files", frozenset({**labels, "retry_count": "2"}.items()))] == 1
    assert gauges[("ingestion_failed_files", frozenset({**labels, "retry_count": "0"}.items()))] == 3
    assert up_and_errors(exporter, "adf-prod") == (1, {})

    # One token for every request; the window, filter and paging as the reference describes.
    assert len(adf.tokens) == 1
    runs = adf.calls("/queryPipelineRuns$")
    assert len(runs) == 3  # 5 failed runs in the window, 2 a page
    first, second = (call.json() for call in runs[:2])
    assert first["continuationToken"] is None and second["continuationToken"] is not None
    assert first["filters"] == [{"operand": "Status", "operator": "Equals", "values": ["Failed"]}]
    assert to_epoch(first["lastUpdatedAfter"]) == pytest.approx(time.time() - 86400, abs=60)
    assert {call.arg("api-version") for call in adf.calls("/query")} == {"2018-06-01"}
    load_docs = next(run for run in adf.runs if run.pipeline == "load-docs")
    assert (
        len(adf.calls(f"/pipelineruns/{load_docs.run_id}/queryActivityruns$")) == 2
    )  # 3 activities, 2 a page


def test_the_azure_data_factory_example_counts_a_refused_client_as_auth(adf: AdfSimulator) -> None:
    seed_example(adf, NOW)
    exporter = polled({**adf_source(adf), "client_secret": "not-the-secret-of-this-app"})
    assert up_and_errors(exporter, "adf-prod") == (0, {"auth": 1})
    assert adf.calls("/queryPipelineRuns$") == []


def test_for_each_that_is_not_a_list_fails_the_poll_naming_it(runs_api: RunsApi) -> None:
    source = runs_source(runs_api, {**BY_OFFSET, "for_each": "vars.kinds"}, vars={"kinds": "all"})
    error = polled(source).states["runs"].last_error
    assert error is not None and error.reason is Reason.INVALID_RESPONSE
    assert "list.for_each (vars.kinds) is not a list" in error.detail


def test_records_may_name_their_tenant_and_a_shard_keeps_only_its_own(runs_api: RunsApi) -> None:
    # Runs of two tenants in one list: the tenant is a field of each record.
    for index, run in enumerate(runs_api.runs):
        run["customer"] = "acme" if index % 2 else "umbrella"
    records = {
        "identity": ["record.id"],
        "message": "record.error",
        "name": "record.file",
        "tenant": "record.customer",
    }
    everything = polled(runs_source(runs_api, BY_OFFSET, records=records))
    tenants = sorted({item["tenant"] for item in failure_items(everything, "runs")})
    assert tenants == ["acme", "umbrella"] and len(failure_items(everything, "runs")) == 25
    mine = shard_of("runs", "acme", 2)
    assert shard_of("runs", "umbrella", 2) != mine
    sharded = polled(runs_source(runs_api, BY_OFFSET, records=records), shard={"index": mine, "total": 2})
    kept = failure_items(sharded, "runs")
    assert {item["tenant"] for item in kept} == {"acme"} and len(kept) == 12


def test_lookups_are_asked_once_per_request_and_again_after_cache_for(
    unstructured_world: UnstructuredSimulator,
) -> None:
    sim = unstructured_world
    configured = example(
        "unstructured", name="configured", base_url=sim.url, api_key=sim.api_key, api_key_file=None
    )
    polled_twice(configured)
    # Two workflows with failures, each asked once in two polls; one connector behind them.
    assert len(sim.calls("/api/v1/workflows/")) == 2 and len(sim.calls("/api/v1/sources/")) == 1

    short = {**configured, "lookups": [{**lookup, "cache_for": "1ms"} for lookup in configured["lookups"]]}
    exporter = Exporter(build_settings({"sources": [short]}, {}))

    async def twice() -> None:
        try:
            await exporter.poll_all()
            await asyncio.sleep(0.01)
            await exporter.poll_all()
        finally:
            await exporter.aclose()

    sim.requests.clear()
    asyncio.run(twice())
    assert len(sim.calls("/api/v1/workflows/")) == 4  # asked again in the second poll


def test_lookups_of_a_source_without_fan_out_are_per_record(runs_api: RunsApi) -> None:
    # Each run's errors, asked as a lookup of the run itself.
    records = {
        "identity": ["record.id"],
        "message": "lookup.errors[0].reason",
        "name": "lookup.errors[0].path",
    }
    lookups = [{"name": "errors", "path": "/runs/{item.id}/errors", "result": "errors"}]
    exporter = polled(runs_source(runs_api, BY_OFFSET, records=records, lookups=lookups))
    items = {item["name"]: item["message"] for item in failure_items(exporter, "runs")}
    assert items["f7.pdf"] == "Failed to parse f7.pdf" and len(items) == 25
    assert len(runs_api.calls("/errors$")) == 25


def test_the_window_in_each_spelling() -> None:
    from exporter.sources.http_json import window_of

    assert window_of(1_796_464_800.75, 86400) == {
        "seconds": 86400,
        "start": 1_796_378_400,
        "end": 1_796_464_800,
        "start_ms": 1_796_378_400_750,
        "end_ms": 1_796_464_800_750,
        "start_rfc3339": "2026-12-04T10:00:00Z",
        "end_rfc3339": "2026-12-05T10:00:00Z",
    }


def test_a_next_link_is_asked_with_the_requests_headers(runs_api: RunsApi) -> None:
    listing = {"path": "/link-header", "headers": {"x-tenant": "{tenant}"}, "paging": {"style": "next_link"}}
    assert record_names(polled(runs_source(runs_api, listing, tenant="acme"))) == ALL_RUNS
    calls = runs_api.calls("^/link-header$")
    assert len(calls) == 3 and {call.headers.get("x-tenant") for call in calls} == {"acme"}


@pytest.mark.parametrize(
    ("paging", "requests"),
    [
        # From offset 5, with the total: 20 items in pages of 10 that the API may serve short.
        ({"style": "offset", "limit": 10, "start": 5, "total": "total"}, 2),
        ({"style": "page", "limit": 10, "first_page": 1, "total": "total"}, 3),
    ],
    ids=["offset-from-5", "page"],
)
def test_the_total_ends_the_paging(runs_api: RunsApi, paging: dict[str, Any], requests: int) -> None:
    if paging["style"] == "offset":
        listing = {
            "path": "/offset",
            "query": {"offset": "{page.offset}", "limit": "{page.limit}"},
            "items": "runs",
        }
    else:
        runs_api.route(
            "GET",
            "/numbered$",
            lambda request: json_response(
                200, {"data": runs_api.runs[(int(request.arg("page") or 1) - 1) * 10 :][:10], "total": 25}
            ),
        )
        listing = {"path": "/numbered", "query": {"page": "{page.number}"}, "items": "data"}
    exporter = polled(runs_source(runs_api, {**listing, "paging": paging}))
    expected = ALL_RUNS[5:] if paging["style"] == "offset" else ALL_RUNS
    assert record_names(exporter) == expected
    assert len(runs_api.calls("^/(offset|numbered)$")) == requests


def test_an_empty_cursor_ends_the_paging(runs_api: RunsApi) -> None:
    runs_api.inject(
        "^/cursor$", status=200, body='{"items": [], "next": ""}', when=lambda r: r.arg("after") == "c10"
    )
    listing = {
        "path": "/cursor",
        "query": {"after": "{page.cursor}"},
        "items": "items",
        "paging": {"style": "cursor", "cursor": "next"},
    }
    exporter = polled(runs_source(runs_api, listing))
    assert record_names(exporter) == ALL_RUNS[:10] and exporter.states["runs"].last_error is None
    assert len(runs_api.calls("^/cursor$")) == 2


def test_what_a_read_cannot_find_is_invalid_response_naming_it(runs_api: RunsApi) -> None:
    cases = [
        (runs_source(runs_api, {**BY_OFFSET, "path": "/{vars.missing}"}), "list: {vars.missing} is null"),
        (
            runs_source(runs_api, {**BY_OFFSET, "items": "nothing"}),
            "GET /offset: list.items (nothing) is not a list",
        ),
        (
            runs_source(
                runs_api,
                BY_OFFSET,
                records={"identity": ["record.id"], "message": "record.error", "platform": "record.nope"},
            ),
            "records.platform: record.nope is missing from a record",
        ),
        (
            runs_source(
                runs_api,
                BY_OFFSET,
                records={"identity": ["record.id"], "message": "record.error", "tenant": "record.nope"},
            ),
            "records.tenant: record.nope is missing from a record",
        ),
        (
            runs_source(
                runs_api,
                BY_OFFSET,
                records={"identity": ["record.id"], "message": "record.error", "tenant": "''"},
            ),
            "records.tenant: '' is missing from a record",
        ),
        (
            runs_source(runs_api, BY_OFFSET, fan_out={"path": "/runs/{item.nope}/errors", "items": "errors"}),
            "fan_out: {item.nope} is null",
        ),
        (
            runs_source(
                runs_api,
                BY_OFFSET,
                fan_out={"path": "/runs/{item.id}/errors", "items": "errors", "scope": "run {item.nope}"},
            ),
            "fan_out: {item.nope} is null",
        ),
    ]
    for source, detail in cases:
        error = polled(source).states["runs"].last_error
        assert error is not None and error.reason is Reason.INVALID_RESPONSE, detail
        assert detail in error.detail


def test_records_of_listed_items_read_them_as_item_and_as_record(runs_api: RunsApi) -> None:
    records = {
        "identity": ["item.id"],
        "message": "item.error",
        "error_type": "`42`",  # not a type: the message is classified
        "select": "item.id != 'r3'",
    }
    exporter = polled(runs_source(runs_api, BY_OFFSET, records=records))
    items = {item["id"]: item for item in failure_items(exporter, "runs")}
    assert len(items) == 24 and "runs/r3" not in items
    first = items["runs/r0"]
    assert (first["error_type"], first["retry_count"], first["name"], first["location"]) == (
        "PARSE_ERROR",
        0,
        "",
        "",
    )


def test_derived_retries_keep_the_platforms_type_of_the_latest_run(runs_api: RunsApi) -> None:
    # Every run failed on the same file: one record, retried 24 times, with its reported type.
    for run in runs_api.runs:
        run["file"], run["code"] = "shared.pdf", "FILE_TOO_LARGE"
    source = runs_source(
        runs_api,
        BY_OFFSET,
        fan_out={"path": "/runs/{item.id}/errors", "items": "errors"},
        records={
            "identity": ["record.path"],
            "message": "record.reason",
            "error_type": "record.code",
            "failed_at": "item.at",
            "name": "record.path",
            "derive_retries": True,
        },
    )
    [item] = failure_items(polled(source), "runs")
    assert (item["error_type"], item["retry_count"], item["message"]) == (
        "FILE_TOO_LARGE",
        24,
        "Failed to parse f24.pdf",
    )


def test_a_for_each_value_is_its_own_part_of_the_poll(runs_api: RunsApi) -> None:
    # The same runs listed once for each kind; a kind that cannot be read keeps its records.
    source = runs_source(
        runs_api,
        {**BY_OFFSET, "for_each": "vars.kinds", "query": {"offset": "{page.offset}", "kind": "{each}"}},
        vars={"kinds": ["import", "export"]},
        records={"identity": ["each", "record.id"], "message": "record.error", "name": "record.file"},
    )

    def fail_exports_and_resolve_r5(exporter: Exporter) -> None:
        assert len(failure_items(exporter, "runs")) == 50
        runs_api.inject("^/offset$", status=500, body="{}", when=lambda r: r.arg("kind") == "export")
        del runs_api.runs[5]

    exporter = polled_in_steps({"sources": [source]}, [fail_exports_and_resolve_r5, lambda _: None])
    ids = {item["id"] for item in failure_items(exporter, "runs")}
    assert "runs/export/r5" in ids and "runs/import/r5" not in ids and len(ids) == 49
    assert up_and_errors(exporter, "runs") == (0, {"http_error": 1})


def test_a_next_link_may_be_relative_and_an_empty_one_ends_the_paging(runs_api: RunsApi) -> None:
    listing = {"path": "/linked", "items": "items", "paging": {"style": "next_link", "next": "links.next"}}
    first = {"items": runs_api.runs[:10], "links": {"next": "/linked?start=10"}}
    runs_api.inject("^/linked$", status=200, body=json.dumps(first), when=lambda r: r.arg("start") is None)
    assert record_names(polled(runs_source(runs_api, listing))) == ALL_RUNS
    assert [call.arg("start") for call in runs_api.calls("^/linked$")] == [None, "10", "20"]

    runs_api.clear_faults()
    runs_api.requests.clear()
    last = {"items": runs_api.runs[:10], "links": {"next": ""}}
    runs_api.inject("^/linked$", status=200, body=json.dumps(last))
    exporter = polled(runs_source(runs_api, listing))
    assert record_names(exporter) == ALL_RUNS[:10] and exporter.states["runs"].last_error is None
    assert len(runs_api.calls("^/linked$")) == 1


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (
            '{"items": [], "links": {"next": 5}}',
            Reason.INVALID_RESPONSE,
            "GET /linked: the next link is not text",
        ),
        ("{not json", Reason.INVALID_RESPONSE, "GET /linked: "),
    ],
    ids=["link-not-text", "not-json"],
)
def test_a_page_behind_a_link_that_cannot_be_read_names_its_request(
    runs_api: RunsApi, body: str, reason: Reason, detail: str
) -> None:
    runs_api.inject("^/linked$", status=200, body=body, when=lambda r: r.arg("start") == "10")
    listing = {"path": "/linked", "items": "items", "paging": {"style": "next_link", "next": "links.next"}}
    error = polled(runs_source(runs_api, listing)).states["runs"].last_error
    assert error is not None and error.reason is reason
    assert error.detail.startswith(detail), error.detail


def test_a_fan_out_answer_that_is_not_a_list_fails_that_part_naming_it(runs_api: RunsApi) -> None:
    runs_api.inject("/runs/r3/errors$", status=200, body='{"errors": {"path": "f3.pdf"}}')
    source = runs_source(
        runs_api,
        BY_OFFSET,
        fan_out={"path": "/runs/{item.id}/errors", "items": "errors"},
        records={"identity": ["item.id", "record.path"], "message": "record.reason", "name": "record.path"},
    )
    exporter = polled(source)
    error = exporter.states["runs"].last_error
    assert error is not None and error.reason is Reason.INVALID_RESPONSE
    assert "GET /runs/r3/errors: fan_out.items (errors) is not a list" in error.detail
    assert len(failure_items(exporter, "runs")) == 24


def test_a_lookups_query_is_sent_and_is_part_of_what_it_caches(runs_api: RunsApi) -> None:
    del runs_api.runs[3:]
    # The first lookup's template meets a null: null for the records, and the next is still made.
    lookups = [{"name": "first", "path": "/{item.nope}"}, serving_owners(runs_api)]
    records = {
        "identity": ["record.id"],
        "message": "record.error",
        "name": "type(lookup.first)",
        "location": "lookup.owner || type(lookup.owner)",
    }
    source = runs_source(runs_api, BY_OFFSET, records=records, lookups=lookups)
    # The owner of r1 cannot be read in the first poll.
    runs_api.inject("^/owners$", status=200, body="{not json", times=1, when=lambda r: r.arg("run") == "r1")

    def located(exporter: Exporter) -> dict[str, tuple[str, str]]:
        return {item["id"]: (item["name"], item["location"]) for item in failure_items(exporter, "runs")}

    def first_poll(exporter: Exporter) -> None:
        assert located(exporter) == {
            "runs/r0": ("null", "team-r0"),
            "runs/r1": ("null", "null"),
            "runs/r2": ("null", "team-r2"),
        }
        assert exporter.states["runs"].warnings == (
            "lookup owner: invalid_response: GET /owners: the body is not JSON",
        )

    exporter = polled_in_steps({"sources": [source]}, [first_poll, lambda _: None])
    assert located(exporter)["runs/r1"] == ("null", "team-r1")
    # r0 and r2 kept from the first poll (cache_for 1h); r1's failure was not kept.
    assert [call.arg("run") for call in runs_api.calls("^/owners$")] == ["r0", "r1", "r2", "r1"]


def test_the_request_body_is_part_of_the_settings_as_written(runs_api: RunsApi) -> None:
    from exporter.sources.http_json import HttpJsonConfig

    listing = {**BY_OFFSET, "method": "POST", "body": {"since": "{window.start}", "size": 10}}
    config = HttpJsonConfig.model_validate(runs_source(runs_api, listing))
    assert config.model_dump(mode="json")["listing"]["body"] == {"since": "{window.start}", "size": 10}
    # A number where a template is written is its text (a query parameter 10 is sent as 10).
    assert config.listing.render({"page": {"offset": 0}, "window": {"start": 1}}) == (
        "/offset",
        {"params": [("offset", "0")], "json": {"since": 1, "size": 10}},
    )
    kinds = {**BY_OFFSET, "query": {"offset": "{page.offset}", "kind": "{vars.kinds}"}}
    repeated = HttpJsonConfig.model_validate(runs_source(runs_api, kinds))
    assert repeated.listing.render({"page": {"offset": 0}, "vars": {"kinds": ["a", "b"]}})[1] == {
        "params": [("offset", "0"), ("kind", "a"), ("kind", "b")]
    }
    numbered = HttpJsonConfig.model_validate(
        runs_source(runs_api, {**BY_OFFSET, "query": {"offset": "{page.offset}", "limit": 10}})
    )
    assert numbered.listing.render({"page": {"offset": 20}})[1] == {
        "params": [("offset", "20"), ("limit", "10")]
    }


@pytest.mark.parametrize(
    ("listing", "problem"),
    [
        ({"path": "/runs/{itme.id}"}, "list.path: 'itme.id' reads itme, which is not here"),
        ({"query": {"since": "{itme}"}}, "list.query: since: 'itme' reads itme, which is not here"),
        ({"method": "POST", "body": {"q": ["{itme}"]}}, "list.body: 'itme' reads itme, which is not here"),
    ],
)
def test_each_place_of_a_request_reads_only_its_own_roots(
    runs_api: RunsApi, listing: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_settings({"sources": [runs_source(runs_api, {**BY_OFFSET, **listing})]}, {})
    [line] = raised.value.problems
    assert line.startswith(f"sources[0].{problem}"), line


@pytest.mark.parametrize(
    ("value", "true"),
    [
        *[(None, False), (False, False), ("", False), ([], False), ({}, False)],
        *[("x", True), ([0], True), ({"a": None}, True), (0, True), (True, True)],
    ],
)
def test_truth_is_jmespaths(value: Any, true: bool) -> None:
    from exporter.sources.http_json import truthy

    assert truthy(value) is true


def test_a_fan_out_path_may_name_its_page(runs_api: RunsApi) -> None:
    runs_api.route("GET", r"/runs/(?P<id>[^/]+)/errors/(?P<page>\d+)$", runs_api.errors)
    source = runs_source(
        runs_api,
        BY_OFFSET,
        fan_out={
            "path": "/runs/{item.id}/errors/{page.number}",
            "items": "errors",
            "paging": {"style": "page", "limit": 10},
        },
        records={"identity": ["item.id"], "message": "record.reason", "name": "record.path"},
    )
    assert record_names(polled(source)) == ALL_RUNS
    assert {call.path for call in runs_api.calls("/errors/")} == {f"/runs/r{i}/errors/1" for i in range(25)}


@pytest.mark.parametrize(("bound", "asked"), [(3, 3), (2, 6)], ids=["within", "evicting"])
def test_the_lookup_cache_keeps_its_bound_evicting_the_oldest(
    runs_api: RunsApi, monkeypatch: pytest.MonkeyPatch, bound: int, asked: int
) -> None:
    # The bound (10,000) lowered, so that three runs reach it.
    from exporter.sources import http_json

    monkeypatch.setattr(http_json, "LOOKUP_CACHE_SIZE", bound)
    del runs_api.runs[3:]
    lookups = [serving_owners(runs_api)]
    records = {"identity": ["record.id"], "message": "record.error", "location": "lookup.owner"}
    exporter = polled_twice(runs_source(runs_api, BY_OFFSET, records=records, lookups=lookups))
    assert sorted(item["location"] for item in failure_items(exporter, "runs")) == [
        "team-r0",
        "team-r1",
        "team-r2",
    ]
    # Within the bound, the second poll asks nothing; past it, each run pushes out the next one.
    assert len(runs_api.calls("^/owners$")) == asked
