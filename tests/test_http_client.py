"""The sources' shared HTTP client: how it forms URLs and what it sends and refuses to follow."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from exporter import __version__
from exporter.records import Reason
from exporter.simulators.rezolve import RezolveSimulator
from exporter.sources.http import HttpClient, joined
from tests.conftest import TENANT_A, rezolve_file, rezolve_source, run_polls


@pytest.mark.parametrize(
    ("base", "url", "expected"),
    [
        ("https://api.example.com", "/v2/jobs", "https://api.example.com/v2/jobs"),
        ("https://api.example.com/", "/v2/jobs", "https://api.example.com/v2/jobs"),
        ("https://gw.example.com/rezolve", "/v2/jobs", "https://gw.example.com/rezolve/v2/jobs"),
        ("https://gw.example.com/rezolve/", "v2/jobs", "https://gw.example.com/rezolve/v2/jobs"),
        ("https://gw.example.com/api", "/jobs?start=2", "https://gw.example.com/api/jobs?start=2"),
        ("https://platform.adobe.io", "https://ims.example.com/token", "https://ims.example.com/token"),
    ],
)
def test_a_path_goes_under_the_base_urls_path_and_an_absolute_url_stays(
    base: str, url: str, expected: str
) -> None:
    assert joined(base, url) == expected


def rezolve_document(rezolve: RezolveSimulator, **overrides: Any) -> dict[str, Any]:
    tenants = [{"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai", "platforms": ["sharepoint"]}]
    return {"sources": [rezolve_source(rezolve, name="r", tenants=tenants, **overrides)]}


def test_every_request_names_the_exporter_and_asks_for_json(rezolve: RezolveSimulator) -> None:
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("f-1", "PARSE_ERROR", "Unable to parse", 1.7e9, 0))
    exporter = run_polls(rezolve_document(rezolve))
    assert exporter.states["r"].up is True
    (request,) = rezolve.calls("/v2/azure/failed-files")
    assert request.headers["user-agent"] == f"ingestion-failure-exporter/{__version__}"
    assert request.headers["accept"] == "application/json"
    assert "cookie" not in request.headers


def test_a_redirect_is_an_http_error_and_is_not_followed(rezolve: RezolveSimulator) -> None:
    # Following it would send the bearer token wherever the answer points.
    path = "/v2/azure/failed-files"
    rezolve.inject(path, status=307, headers={"Location": f"{path}?moved=1"}, times=1)
    exporter = run_polls(rezolve_document(rezolve))
    state = exporter.states["r"]
    assert state.up is False and state.errors[Reason.HTTP_ERROR] == 1
    assert len(rezolve.calls(path)) == 1


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_the_proxy_the_environment_names_carries_every_request(
    rezolve: RezolveSimulator, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    # The simulator stands in for the proxy: a request in absolute form reaches its routes.
    clean_proxy_env.setenv("HTTP_PROXY", rezolve.url)
    exporter = run_polls(rezolve_document(rezolve, base_url="http://rezolve.example.invalid"))
    assert exporter.states["r"].up is True
    (request,) = rezolve.calls("/v2/azure/failed-files")
    assert request.headers["host"] == "rezolve.example.invalid"


def test_a_host_no_proxy_names_is_reached_directly(
    rezolve: RezolveSimulator, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    exporter = run_polls(rezolve_document(rezolve))
    assert exporter.states["r"].up is True


def test_the_next_request_goes_out_before_the_caller_works_on_an_answer(rezolve: RezolveSimulator) -> None:
    # A fan-out poll counts each answer while the next request is on its way, not before sending it.
    path = "/v2/azure/failed-files"
    rezolve.inject(path, status=200, body="{}")
    client = HttpClient(rezolve.url, timeout=5, max_concurrency=1, max_response_bytes=1 << 20)

    async def first_answer_then_work() -> int:
        waiting = asyncio.ensure_future(client.request("POST", path))  # queued behind the first
        await client.request("POST", path)
        time.sleep(0.5)  # the caller's CPU work on the first answer: the event loop is held
        asked_meanwhile = len(rezolve.calls(path))
        await waiting
        await client.aclose()
        return asked_meanwhile

    assert asyncio.run(first_answer_then_work()) == 2
