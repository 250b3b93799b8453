"""The simulators' own contract: faults can be injected over HTTP, as the end-to-end tools do."""

from __future__ import annotations

import time

import httpx

from exporter.simulators.rezolve import RezolveSimulator


def test_faults_are_injected_and_cleared_over_http(rezolve: RezolveSimulator) -> None:
    url = f"{rezolve.url}/v2/azure/failed-files"
    fault = {
        "path": "failed-files",
        "status": 503,
        "body": "upstream down",
        "headers": {"Retry-After": "7"},
        "times": 2,
    }
    assert httpx.post(f"{rezolve.url}/_sim/faults", json=fault).status_code == 200
    answers = [httpx.post(url, json={}) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 401]  # then the real handler: no token
    assert answers[0].text == "upstream down" and answers[0].headers["retry-after"] == "7"
    httpx.post(f"{rezolve.url}/_sim/faults", json={"delay": 0.3})
    started = time.monotonic()
    assert httpx.post(url, json={}).status_code == 401
    assert time.monotonic() - started >= 0.3
    assert httpx.delete(f"{rezolve.url}/_sim/faults").json() == {"faults": 0}
    assert httpx.get(f"{rezolve.url}/unknown").status_code == 404
