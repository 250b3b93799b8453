"""The commvault source against its simulator."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.records import Reason
from exporter.simulators.base import SimRequest
from exporter.simulators.commvault import CommvaultSimulator, SimJob
from exporter.sources.commvault import csv_items
from tests.conftest import failed_key, failure_series, poll_holding_until_counted, run_polls

HOUR = 3600.0


@pytest.fixture
def commvault() -> Iterator[CommvaultSimulator]:
    simulator = CommvaultSimulator(username="svc", password="pa:ss wörd").start()
    try:
        yield simulator
    finally:
        simulator.stop()


def source(sim: CommvaultSimulator, **extra: Any) -> dict[str, Any]:
    return {
        "sources": [
            {
                "name": "cv",
                "kind": "commvault",
                "base_url": sim.url,
                "username": sim.username,
                "password": sim.password,
                "tenant": "acme",
                "timeout": "2s",
                **extra,
            }
        ]
    }


def job(
    job_id: int,
    items: list[tuple[str, str]],
    *,
    age: float = HOUR,
    csv: bool = False,
    app: str = "Windows File System",
    client: str = "fs01",
) -> SimJob:
    return SimJob(job_id, app, client, "default", time.time() - age, items, csv)


def test_logs_in_with_a_base64_password_and_sends_the_authtoken(commvault: CommvaultSimulator) -> None:
    commvault.add_job(job(1, [("C:\\a.txt", "Access is denied.")]))
    exporter = run_polls(source(commvault))
    assert exporter.states["cv"].up is True
    [login] = commvault.calls("/Login")
    assert json.loads(login.body) == {
        "username": "svc",
        "password": base64.b64encode("pa:ss wörd".encode()).decode(),
    }
    for request in commvault.calls("/Job"):
        assert request.headers["authtoken"].startswith("QSDK ")
        assert request.headers["accept"] == "application/json"
    assert failure_series(exporter) == {
        failed_key("cv", "acme", "windows_file_system", "ACCESS_DENIED", "0"): 1
    }


def test_job_discovery_pages_with_limit_and_offset_headers(commvault: CommvaultSimulator) -> None:
    for i in range(1, 8):
        commvault.add_job(job(i, [(f"C:\\f{i}.txt", "Access is denied.")]))
    exporter = run_polls(source(commvault, page_size=3, lookback="1d"))
    listings = commvault.calls("^/Job$")
    assert [(r.headers["limit"], r.headers["offset"]) for r in listings] == [
        ("3", "0"),
        ("3", "3"),
        ("3", "6"),
    ]
    assert listings[0].query == {
        "completedJobLookupTime": ["86400"],
        "jobCategory": ["Finished"],
        "jobFilter": ["Backup"],
    }
    assert sum(failure_series(exporter).values()) == 7


def test_a_pages_jobs_are_read_while_the_next_page_is_on_its_way(commvault: CommvaultSimulator) -> None:
    for i in range(1, 7):
        commvault.add_job(job(i, [(f"C:\\f{i}.txt", "Access is denied.")]))
    second_page = threading.Event()

    def first_job_asked(request: SimRequest) -> bool:
        if request.match["id"] == "1":
            second_page.set()
        return False  # noticed, not broken

    # The second page is answered only once the first page's first job is asked for its items.
    commvault.inject("^/Job$", when=lambda r: r.headers["offset"] == "3", hold=second_page, times=1)
    commvault.inject("/FailedItems$", when=first_job_asked)
    exporter = run_polls(source(commvault, page_size=3, lookback="1d"))
    assert exporter.states["cv"].up is True
    assert sum(failure_series(exporter).values()) == 6


def test_a_failed_job_page_fails_the_poll_and_leaves_no_request_running(
    commvault: CommvaultSimulator,
) -> None:
    for i in range(1, 7):
        commvault.add_job(job(i, [(f"C:\\f{i}.txt", "Access is denied.")]))
    commvault.inject("^/Job$", status=400, when=lambda r: r.headers["offset"] == "3")
    commvault.inject("/FailedItems$", delay=0.3)  # the first page's items are still on the way
    exporter = run_polls(source(commvault, page_size=3, lookback="1d"))
    state = exporter.states["cv"]
    assert state.up is False and state.result is None
    assert {reason: n for reason, n in state.errors.items() if n} == {Reason.HTTP_ERROR: 1}


def test_only_jobs_that_ended_within_the_lookback_count(commvault: CommvaultSimulator) -> None:
    commvault.add_job(job(1, [("C:\\recent", "Access is denied.")], age=HOUR))
    commvault.add_job(job(2, [("C:\\old", "Access is denied.")], age=30 * HOUR))
    commvault.add_job(SimJob(3, "Windows File System", "fs01", "default", 0, [("C:\\running", "x")]))
    commvault.add_job(job(4, []))  # completed cleanly: its failed items are not fetched
    commvault.jobs[4].status = "Completed"
    exporter = run_polls(source(commvault, lookback="1d"))
    assert sum(failure_series(exporter).values()) == 1
    fetched = {r.match["id"] for r in commvault.calls("/FailedItems$")}
    assert fetched == {"1"}


def test_an_item_failing_in_several_jobs_is_one_record_with_derived_retries(
    commvault: CommvaultSimulator,
) -> None:
    commvault.add_job(job(1, [("C:\\x", "Access is denied."), ("C:\\y", "Access is denied.")], age=5 * HOUR))
    commvault.add_job(job(2, [("C:\\x", "Access is denied.")], age=3 * HOUR))
    commvault.add_job(job(3, [("C:\\x", "The file is locked by another user")], age=HOUR))
    commvault.add_job(job(4, [("C:\\x", "Access is denied.")], age=HOUR, client="fs02"))  # other client
    exporter = run_polls(source(commvault))
    assert failure_series(exporter) == {
        failed_key(
            "cv", "acme", "windows_file_system", "FILE_LOCKED", "2"
        ): 1,  # latest reason, failed in 3 jobs
        failed_key("cv", "acme", "windows_file_system", "ACCESS_DENIED", "0"): 2,  # C:\y, and C:\x on fs02
    }


def test_a_jobs_items_are_counted_while_other_jobs_are_still_answering(commvault: CommvaultSimulator) -> None:
    commvault.add_job(job(1, [("C:\\first.txt", "Access is denied.")], age=2 * HOUR))
    commvault.add_job(job(2, [("C:\\second.txt", "Access is denied.")], age=HOUR))
    # Job 2's items are answered only once job 1's are counted.
    result = poll_holding_until_counted(source(commvault), commvault, "^/Job/2/FailedItems$", "C:\\first.txt")
    assert sum(result.counts.values()) == 2


def test_csv_items_are_mapped_by_column_name(commvault: CommvaultSimulator) -> None:
    reason = (
        "Error in performing post items web request [https://graph.microsoft.com/beta/teams/a7104bad/channels]. "
        "[Error code [Forbidden], Error message [Forbidden], Status code [403] [Forbidden]]"
    )
    commvault.add_job(
        job(
            1,
            [("\\WikiTestTeam1\\General", reason), ("\\Team2\\Files", "Request timed out")],
            csv=True,
            app="Microsoft Teams",
        )
    )
    exporter = run_polls(source(commvault))
    assert failure_series(exporter) == {
        failed_key("cv", "acme", "microsoft_teams", "ACCESS_DENIED", "0"): 1,
        failed_key("cv", "acme", "microsoft_teams", "TIMEOUT", "0"): 1,
    }
    shuffled = {
        "columns": ["GUID", "Reason", "Item Name", "Path"],
        "rows": [{"row": ["g-1", "Access is denied.", "General", "\\Team"]}, {"row": ["g-2", "x", "", ""]}],
    }
    assert csv_items(shuffled, "t") == [("\\Team\\General", "Access is denied."), ("g-2", "x")]


def test_logs_in_again_once_when_the_token_expires(commvault: CommvaultSimulator) -> None:
    commvault.add_job(job(1, [("C:\\a", "Access is denied.")]))
    exporter = run_polls(source(commvault), commvault.expire_tokens)
    assert exporter.states["cv"].up is True
    assert commvault.logins == 2
    assert len(commvault.calls("/FailedItems$")) == 2


def test_a_refused_login_is_auth(commvault: CommvaultSimulator) -> None:
    exporter = run_polls(source(commvault, password="wrong"))
    state = exporter.states["cv"]
    assert (state.up, state.errors[Reason.AUTH]) == (False, 1)
    assert state.last_error is not None and "Invalid Username or Password" in state.last_error.detail


def test_a_static_authtoken_is_used_as_is_and_a_401_is_auth(commvault: CommvaultSimulator) -> None:
    token = commvault.issue_token()
    document = source(commvault, authtoken=token.removeprefix("QSDK "))
    del document["sources"][0]["password"]
    commvault.add_job(job(1, [("C:\\a", "Access is denied.")]))
    exporter = run_polls(document, commvault.expire_tokens)
    state = exporter.states["cv"]
    assert state.errors[Reason.AUTH] == 1 and commvault.logins == 0
    assert commvault.calls("/Job")[0].headers["authtoken"] == token


@pytest.mark.parametrize("prefix", ["QSDK ", "SAML ", "Bearer "])
def test_a_static_authtoken_with_its_prefix_is_passed_on_as_is(
    commvault: CommvaultSimulator, prefix: str
) -> None:
    token = f"{prefix}v4-access-token"
    with commvault.lock:
        commvault.tokens.add(token)
    document = source(commvault, authtoken=token)
    del document["sources"][0]["password"]
    commvault.add_job(job(1, [("C:\\a", "Access is denied.")]))
    assert run_polls(document).states["cv"].up is True
    assert {r.headers["authtoken"] for r in commvault.calls("/Job")} == {token}


def test_a_fixed_job_list_is_read_without_discovery(commvault: CommvaultSimulator) -> None:
    commvault.add_job(job(7, [("C:\\a", "Access is denied.")]))
    commvault.add_job(job(8, [("C:\\b", "Access is denied.")]))
    exporter = run_polls(source(commvault, job_ids=[7]))
    assert not commvault.calls("^/Job$")
    assert sum(failure_series(exporter).values()) == 1


def test_a_logical_error_in_a_200_fails_that_job_only(commvault: CommvaultSimulator) -> None:
    commvault.add_job(job(1, [("C:\\a", "Access is denied.")]))
    commvault.add_job(job(2, [("C:\\b", "Access is denied.")]))
    commvault.inject(
        "/Job/2/FailedItems",
        status=200,
        body='{"errList": [{"errorCode": 2, "errLogMessage": "Job not found"}]}',
    )
    exporter = run_polls(source(commvault))
    state = exporter.states["cv"]
    assert (state.up, state.errors[Reason.HTTP_ERROR]) == (False, 1)
    assert sum(failure_series(exporter).values()) == 1  # job 1 still counted
