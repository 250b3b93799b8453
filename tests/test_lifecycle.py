"""The lifecycle of docs/reference.md, Command line on the real program: reload on SIGHUP and POST /-/reload, an
invalid configuration rejected while the old one keeps polling, and a stop with a poll in flight."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from exporter.simulators.rezolve import RezolveSimulator
from tests.conftest import (
    TENANT_A,
    Served,
    eventually,
    parse_exposition,
    rezolve_file,
    rezolve_source,
    series,
)

SP = "sharepoint"


def discovered(url: str) -> dict[str, float]:
    """Discovered records per source, summed over label sets."""
    found = series(
        parse_exposition(httpx.get(f"{url}/metrics").text), "ingestion_failed_files_discovered_total"
    )
    out: dict[str, float] = {}
    for labels, value in found.items():
        source = dict(labels)["source"]
        out[source] = out.get(source, 0) + value
    return out


def gauge(url: str, name: str, **labels: str) -> float | None:
    return parse_exposition(httpx.get(f"{url}/metrics").text).get((name, frozenset(labels.items())))


def polls(url: str, source: str) -> float:
    return gauge(url, "ingestion_source_poll_duration_seconds_count", source=source) or 0


def config(rezolve: RezolveSimulator, *sources: dict[str, Any]) -> dict[str, Any]:
    return {"poll_interval": "1s", "sources": list(sources)}


def test_reload_keeps_unchanged_sources_restarts_changed_ones_and_drops_removed_ones(
    serve: Any, rezolve: RezolveSimulator, tmp_path: Path
) -> None:
    rezolve.put(TENANT_A, SP, rezolve_file("a", "PARSE_ERROR", "", time.time(), 0))
    one_platform = [{"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai", "platforms": [SP]}]

    def source(name: str, **extra: Any) -> dict[str, Any]:
        return rezolve_source(rezolve, name=name, tenants=one_platform, **extra)

    before = config(rezolve, source("kept"), source("changing"), source("leaving"))
    served: Served = serve(before)
    path = next(tmp_path.glob("config-*.yml"))
    url = served.url
    eventually(lambda: all(polls(url, s) >= 1 for s in ("kept", "changing", "leaving")))
    rezolve.put(TENANT_A, SP, rezolve_file("b", "PARSE_ERROR", "", time.time(), 0))
    eventually(lambda: discovered(url) == {"kept": 1, "changing": 1, "leaving": 1})

    after = config(rezolve, source("kept"), source("changing", timeout="3s"), source("arriving"))
    path.write_text(yaml.safe_dump(after))
    served.process.send_signal(signal.SIGHUP)
    eventually(lambda: set(discovered(url)) == {"kept", "changing", "arriving"})
    # The changed and the new source start from a baseline; the unchanged one keeps its count.
    assert discovered(url) == {"kept": 1, "changing": 0, "arriving": 0}
    assert "leaving" not in httpx.get(f"{url}/metrics").text
    rezolve.put(TENANT_A, SP, rezolve_file("c", "PARSE_ERROR", "", time.time(), 0))
    eventually(lambda: discovered(url) == {"kept": 2, "changing": 1, "arriving": 1})
    assert gauge(url, "ingestion_exporter_config_last_reload_successful") == 1
    assert "configuration reloaded: 1 source(s) kept, 2 started, 2 stopped" in served.stderr()

    # An invalid file is rejected: the running configuration goes on polling.
    path.write_text("sources: [{name: BAD, kind: nope}]\n")
    served.process.send_signal(signal.SIGHUP)
    eventually(lambda: gauge(url, "ingestion_exporter_config_last_reload_successful") == 0)
    counted = polls(url, "kept")
    eventually(lambda: polls(url, "kept") > counted)
    log = served.stderr()
    assert "configuration rejected, the running one is kept: sources[0].kind: unknown kind 'nope'" in log
    assert "Traceback" not in log


def test_post_reload_answers_400_with_the_problems_or_200(
    serve: Any, rezolve: RezolveSimulator, tmp_path: Path
) -> None:
    served: Served = serve(config(rezolve, rezolve_source(rezolve)), "--enable-lifecycle")
    path = next(tmp_path.glob("config-*.yml"))
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    assert httpx.post(f"{served.url}/-/reload").status_code == 200
    path.write_text(yaml.safe_dump({"poll_interval": "soon", "sources": [rezolve_source(rezolve)]}))
    refused = httpx.post(f"{served.url}/-/reload")
    assert refused.status_code == 400
    assert refused.text.startswith("poll_interval: ")
    assert gauge(served.url, "ingestion_exporter_config_last_reload_successful") == 0
    assert 'source="rezolve-test"' in httpx.get(f"{served.url}/metrics").text


def test_reload_is_not_served_without_enable_lifecycle(serve: Any, rezolve: RezolveSimulator) -> None:
    served: Served = serve(config(rezolve, rezolve_source(rezolve)))
    eventually(lambda: httpx.get(f"{served.url}/healthz").status_code == 200)
    assert httpx.post(f"{served.url}/-/reload").status_code in (404, 405)


def test_sigterm_with_a_poll_in_flight_stops_at_once_without_a_traceback(
    serve: Any, rezolve: RezolveSimulator
) -> None:
    release = threading.Event()
    rezolve.inject(hold=release)
    try:
        served: Served = serve(config(rezolve, rezolve_source(rezolve, timeout="60s")))
        eventually(lambda: rezolve.calls("failed-files"))  # the poll is waiting for its answer
        started = time.monotonic()
        assert served.stop(signal.SIGTERM, timeout=10) == 0
        assert time.monotonic() - started < 5  # docs/reference.md, Command line: stop within 5 seconds
        log = served.stderr()
        assert "stopping" in log and "Traceback" not in log and "CancelledError" not in log
    finally:
        release.set()


def test_sigterm_with_a_table_read_in_flight_does_not_wait_for_it(serve: Any) -> None:
    """The table SDK is synchronous and reads in a thread: a stuck read must not hold up the exit."""
    from exporter.simulators.base import Simulator, json_response

    table = Simulator()
    table.route("GET", r".*", lambda request: json_response(200, {"value": []}))
    release = threading.Event()
    table.inject(hold=release)
    table.start()
    try:
        key = "YW4gYWNjb3VudCBrZXk="
        source = {
            "name": "table",
            "kind": "azure_table",
            "timeout": "60s",
            "connection_string": (
                f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
                f"TableEndpoint={table.url}/devstoreaccount1;"
            ),
        }
        served: Served = serve({"poll_interval": "1h", "sources": [source]})
        eventually(lambda: table.calls(".*"))  # the read is waiting for its answer
        started = time.monotonic()
        assert served.stop(signal.SIGTERM, timeout=30) == 0
        assert time.monotonic() - started < 5
        assert "Traceback" not in served.stderr()
    finally:
        release.set()
        table.stop()
