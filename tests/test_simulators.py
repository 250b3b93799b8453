"""The simulators' own contract: faults injected over HTTP, as the end-to-end tools do, and answers
broken on the wire as the fault matrix needs them."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from exporter.simulators.base import SimResponse, Simulator
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


def read_raw(url: str, path: str) -> tuple[bytes, BaseException | None]:
    """Send one request on a bare socket and read until the server ends or breaks it."""
    host, port = url.removeprefix("http://").split(":")
    received, error = b"", None
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as exc:
            error = exc
    return received, error


def test_broken_answers_break_on_the_wire_as_their_mode_says() -> None:
    sim = Simulator()
    body = json.dumps({"data": list(range(200))}).encode()
    sim.route("GET", "/data", lambda request: SimResponse(200, body, {"Content-Type": "application/json"}))
    sim.start()
    try:
        sim.inject("/data", mode="reset", times=1)
        head_and_half, error = read_raw(sim.url, "/data")
        assert isinstance(error, ConnectionResetError)
        assert f"Content-Length: {len(body)}".encode() in head_and_half
        assert head_and_half.endswith(body[: len(body) // 2])

        sim.inject("/data", mode="stall", times=1)
        head_and_half, error = read_raw(sim.url, "/data")
        assert isinstance(error, TimeoutError) and head_and_half.endswith(body[: len(body) // 2])

        sim.inject("/data", mode="trickle", delay=0.001, times=1)
        started = time.monotonic()
        whole = httpx.get(f"{sim.url}/data")
        assert whole.content == body and time.monotonic() - started >= len(body) * 0.001

        sim.inject("/data", mode="chunked", times=1)
        chunked = httpx.get(f"{sim.url}/data")
        assert chunked.content == body and chunked.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in chunked.headers

        with pytest.raises(ValueError, match="mode must be one of"):
            sim.inject("/data", mode="explode")  # type: ignore[arg-type]
        assert httpx.post(f"{sim.url}/_sim/faults", json={"mode": "explode"}).status_code == 400
    finally:
        sim.stop()


def test_a_paused_simulator_refuses_connections_and_resumes_on_its_port(rezolve: RezolveSimulator) -> None:
    with httpx.Client() as client:
        assert client.post(f"{rezolve.url}/v2/azure/failed-files", json={}).status_code == 401
        rezolve.pause()
        with pytest.raises(httpx.ConnectError):  # the kept-alive connection is gone too
            client.post(f"{rezolve.url}/v2/azure/failed-files", json={})
        rezolve.resume()
        assert client.post(f"{rezolve.url}/v2/azure/failed-files", json={}).status_code == 401
