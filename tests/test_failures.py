"""``GET /failures`` of the real program over HTTP: filters, order, paging, the three formats,
400 for bad parameters, 404 when off, and the cut at ``max_records_per_source``."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import pytest

from exporter.serving.failures import FIELDS
from exporter.simulators.rezolve import RezolveFile, RezolveSimulator
from tests.conftest import TENANT_A, TENANT_B, Served, eventually, parse_exposition, rezolve_source, series

NOW = time.time()
SCRIPT = "<script>alert(1)</script>.pdf"
# (tenant, platform, file id, name, error type, message, minutes ago, retries)
FILES = [
    (TENANT_A, "sharepoint", "f1", "board-pack.pdf", "FILE_TOO_LARGE", "File exceeds 50MB", 1, 0),
    (TENANT_A, "sharepoint", "f2", SCRIPT, "ACCESS_DENIED", "Insufficient permissions", 2, 3),
    (TENANT_A, "servicenow", "f3", "kb-0042.html", "PARSE_ERROR", "Unable to parse", 3, 1),
    (TENANT_B, "sharepoint", "f4", "Budget.xlsx", "ACCESS_DENIED", "Access is denied", 4, 7),
    (TENANT_B, "servicenow", "f5", "legacy.txt", "ENCODING_ERROR", "codec can't decode", 5, 0),
    (TENANT_B, "servicenow", "f6", "scan.tiff", "TIMEOUT", "Processing timed out", 6, 2),
]


@pytest.fixture
def served(serve: Any, rezolve: RezolveSimulator) -> Served:
    for tenant, platform, file_id, name, error_type, message, minutes, retries in FILES:
        rezolve.put(
            tenant, platform, RezolveFile(file_id, name, error_type, message, NOW - 60 * minutes, retries)
        )
    return start(serve, rezolve)


TENANTS = [
    {"tenant_id": tenant, "rezolve_domain": domain, "platforms": ["sharepoint", "servicenow"]}
    for tenant, domain in ((TENANT_A, "acme.rezolve.ai"), (TENANT_B, "globex.rezolve.ai"))
]


def start(serve: Any, rezolve: RezolveSimulator, **settings: Any) -> Served:
    source = rezolve_source(rezolve, tenants=TENANTS)
    running: Served = serve({"poll_interval": "1h", "sources": [source], **settings})
    eventually(lambda: httpx.get(f"{running.url}/readyz").status_code == 200)
    return running


def get(served: Served, query: str = "", **headers: str) -> httpx.Response:
    return httpx.get(f"{served.url}/failures{query}", headers=headers)


def ids(response: httpx.Response) -> list[str]:
    return [item["id"].rsplit("/", 1)[1] for item in response.json()["items"]]


def test_every_record_newest_first_with_the_fields_of_the_spec(served: Served) -> None:
    document = get(served).json()
    assert document["total"] == 6 and document["offset"] == 0 and document["limit"] == 100
    assert document["truncated_sources"] == []
    assert [item["id"] for item in document["items"]] == [
        f"{tenant}/{platform}/{file_id}" for tenant, platform, file_id, *_ in FILES
    ]
    first = document["items"][1]
    assert list(first) == list(FIELDS)
    assert first == {
        "source": "rezolve-test",
        "tenant": TENANT_A,
        "platform": "sharepoint",
        "error_type": "ACCESS_DENIED",
        "retry_count": 3,
        "retry_label": "3",
        "id": f"{TENANT_A}/sharepoint/f2",
        "name": SCRIPT,
        "location": f"https://contoso.sharepoint.example/{SCRIPT}",
        "message": "Insufficient permissions",
        "failed_at": pytest.approx(int(NOW - 120), abs=1),
        "first_seen": first["first_seen"],
        "rows": None,
    }
    assert NOW - 60 < first["first_seen"] <= time.time()


def test_the_records_are_those_the_gauges_count(served: Served) -> None:
    gauges = series(parse_exposition(httpx.get(f"{served.url}/metrics").text), "ingestion_failed_files")
    counted: dict[Any, int] = {}
    for item in get(served).json()["items"]:
        key = frozenset(
            {
                **{k: item[k] for k in ("source", "tenant", "platform", "error_type")},
                "retry_count": item["retry_label"],
            }.items()
        )
        counted[key] = counted.get(key, 0) + 1
    assert counted == gauges


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"?tenant={TENANT_B}", ["f4", "f5", "f6"]),
        ("?platform=servicenow", ["f3", "f5", "f6"]),
        ("?error_type=ACCESS_DENIED", ["f2", "f4"]),
        ("?error_type=ACCESS_DENIED&error_type=TIMEOUT", ["f2", "f4", "f6"]),  # repeated: OR
        (f"?tenant={TENANT_B}&platform=servicenow", ["f5", "f6"]),  # different: AND
        ("?min_retry_count=3", ["f2", "f4"]),
        ("?q=BUDGET", ["f4"]),  # the name, any case
        ("?q=contoso.servicenow", ["f3", "f5", "f6"]),  # the location
        ("?q=timed+out", ["f6"]),  # the message
        ("?source=rezolve-test&tenant=nobody", []),
        ("?source=other", []),
        ("?tenant=&q=", ["f1", "f2", "f3", "f4", "f5", "f6"]),  # empty form fields filter nothing
    ],
)
def test_filters(served: Served, query: str, expected: list[str]) -> None:
    response = get(served, query)
    assert response.status_code == 200
    assert ids(response) == expected and response.json()["total"] == len(expected)


def test_pages_keep_the_order_and_the_total(served: Served) -> None:
    pages = [get(served, f"?limit=4&offset={offset}").json() for offset in (0, 4, 8)]
    assert [ids_of(page) for page in pages] == [["f1", "f2", "f3", "f4"], ["f5", "f6"], []]
    assert {page["total"] for page in pages} == {6} and pages[1]["offset"] == 4 and pages[1]["limit"] == 4


def ids_of(document: dict[str, Any]) -> list[str]:
    return [item["id"].rsplit("/", 1)[1] for item in document["items"]]


@pytest.mark.parametrize(("query", "accept"), [("?format=csv", ""), ("", "text/csv")])
def test_csv_has_a_header_row_then_one_row_per_record(served: Served, query: str, accept: str) -> None:
    response = get(served, query + ("&" if query else "?") + "error_type=ACCESS_DENIED", Accept=accept)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(FIELDS)
    assert [row[6].rsplit("/", 1)[1] for row in rows[1:]] == ["f2", "f4"]
    assert rows[1][7] == SCRIPT  # data, as it is: CSV is for scripts


@pytest.mark.parametrize(("query", "accept"), [("?format=html", ""), ("", "text/html,application/xhtml+xml")])
def test_the_page_escapes_every_value(served: Served, query: str, accept: str) -> None:
    response = get(served, query, Accept=accept)
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.pdf" in page
    assert "6 failed file(s)" in page and "rezolve-test" in page
    assert 'href="failures?format=html"' in httpx.get(f"{served.url}/").text


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?colour=red", "unknown parameter 'colour'"),
        ("?limit=0", "limit must be from 1 to 1000, not 0"),
        ("?limit=1001", "limit must be from 1 to 1000, not 1001"),
        ("?limit=ten", "limit must be an integer, not 'ten'"),
        ("?offset=-1", "offset must be at least 0, not -1"),
        ("?min_retry_count=many", "min_retry_count must be an integer, not 'many'"),
        ("?format=xml", "format must be one of json, csv, html, not 'xml'"),
        ("?limit=1&limit=2", "limit may be given once"),
        (
            "?group_by=file",
            "group_by must be one of source, tenant, platform, error_type, message, not 'file'",
        ),
        ("?group_by=tenant&group_by=source", "group_by may be given once"),
    ],
)
def test_a_bad_parameter_is_400_with_the_reason(served: Served, query: str, reason: str) -> None:
    response = get(served, query)
    assert (response.status_code, response.text.strip()) == (400, reason)


def test_off_is_404(serve: Any, rezolve: RezolveSimulator) -> None:
    running = start(serve, rezolve, failure_details={"enabled": False})
    assert get(running).status_code == 404
    assert httpx.get(f"{running.url}/metrics").status_code == 200


def test_details_beyond_the_cap_are_cut_and_said_so_while_the_counts_are_whole(
    serve: Any, rezolve: RezolveSimulator
) -> None:
    for n in range(10):
        rezolve.put(TENANT_A, "sharepoint", RezolveFile(f"x{n:02d}", "x.pdf", "PARSE_ERROR", "y", NOW - n, 0))
    running = start(serve, rezolve, failure_details={"max_records_per_source": 4, "message_max_chars": 3})
    document = get(running).json()
    assert document["total"] == 4 and document["truncated_sources"] == ["rezolve-test"]
    assert {item["message"] for item in document["items"]} == {"y"}
    samples = parse_exposition(httpx.get(f"{running.url}/metrics").text)
    assert sum(series(samples, "ingestion_failed_files").values()) == 10


def test_messages_are_cut_at_message_max_chars(serve: Any, rezolve: RezolveSimulator) -> None:
    rezolve.put(
        TENANT_A, "sharepoint", RezolveFile("long", "l.pdf", "PARSE_ERROR", "abcdefghij" * 10, NOW, 0)
    )
    running = start(serve, rezolve, failure_details={"message_max_chars": 12})
    [item] = get(running).json()["items"]
    assert item["message"] == "abcdefghijab"


def test_groups_by_error_type_most_files_first_with_their_newest_as_example(served: Served) -> None:
    document = get(served, "?group_by=error_type").json()
    assert list(document) == ["total", "group_by", "offset", "limit", "truncated_sources", "groups"]
    assert (document["total"], document["group_by"], document["offset"], document["limit"]) == (
        6,
        "error_type",
        0,
        100,
    )
    groups = document["groups"]
    assert [(g["key"], g["count"]) for g in groups] == [
        ("ACCESS_DENIED", 2),  # most files first, then by key
        ("ENCODING_ERROR", 1),
        ("FILE_TOO_LARGE", 1),
        ("PARSE_ERROR", 1),
        ("TIMEOUT", 1),
    ]
    access = groups[0]
    assert access["example"]["id"] == f"{TENANT_A}/sharepoint/f2"  # the newer of f2 and f4
    assert list(access["example"]) == list(FIELDS)
    assert access["newest_failed_at"] == access["example"]["failed_at"] == pytest.approx(NOW - 120)


def test_groups_follow_the_filters_and_page(served: Served) -> None:
    by_tenant = get(served, "?group_by=tenant&platform=servicenow").json()
    assert [(g["key"], g["count"]) for g in by_tenant["groups"]] == [(TENANT_B, 2), (TENANT_A, 1)]
    assert by_tenant["total"] == 3
    second = get(served, "?group_by=platform&limit=1&offset=1").json()
    assert [(g["key"], g["count"]) for g in second["groups"]] == [("sharepoint", 3)]  # after servicenow
    assert (second["total"], second["limit"], second["offset"]) == (6, 1, 1)
    [source] = get(served, "?group_by=source").json()["groups"]
    assert (source["key"], source["count"]) == ("rezolve-test", 6)


def test_groups_by_message_pattern_and_a_pattern_filters_to_its_files(
    serve: Any, rezolve: RezolveSimulator
) -> None:
    for n, share in enumerate(["HR", "Legal", "HR", "Finance"]):
        path = f"C:\\Data\\{share}\\doc-{n}.docx"
        message = f"Access to the path '{path}' is denied."
        rezolve.put(TENANT_A, "sharepoint", RezolveFile(f"p{n}", f"doc-{n}.docx", "", message, NOW - n, 0))
    rezolve.put(TENANT_B, "sharepoint", RezolveFile("big", "big.pdf", "", "File exceeds 50MB", NOW - 9, 0))
    running = start(serve, rezolve)
    groups = get(running, "?group_by=message").json()["groups"]
    assert [(g["key"], g["count"]) for g in groups] == [
        ("Access to the path <str> is denied.", 4),
        ("File exceeds <n>MB", 1),
    ]
    assert groups[0]["example"]["name"] == "doc-0.docx"
    files = get(running, "?pattern=Access+to+the+path+%3Cstr%3E+is+denied.").json()
    assert files["total"] == 4 and sorted(ids(get(running, "?pattern=File+exceeds+%3Cn%3EMB"))) == ["big"]


def test_groups_as_csv_one_row_a_group_and_as_a_page_with_links_to_their_files(served: Served) -> None:
    rows = list(csv.reader(io.StringIO(get(served, "?group_by=error_type&format=csv").text)))
    assert rows[0][:3] == ["key", "count", "newest_failed_at"]
    assert rows[0][3:] == [f"example_{name}" for name in FIELDS]
    assert [row[:2] for row in rows[1:3]] == [["ACCESS_DENIED", "2"], ["ENCODING_ERROR", "1"]]
    assert rows[1][3 + FIELDS.index("name")] == SCRIPT
    page = get(served, "?group_by=error_type&format=html&tenant=" + TENANT_A).text
    assert "3 failed file(s) in 3 group(s) by error_type" in page
    assert f"href='failures?format=html&amp;tenant={TENANT_A}&amp;error_type=ACCESS_DENIED'" in page
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    linked = get(served, f"?format=json&tenant={TENANT_A}&error_type=ACCESS_DENIED")
    assert ids(linked) == ["f2"]


def test_the_page_links_back_to_grafana_for_the_tenant_chosen(
    served: Served, serve: Any, rezolve: RezolveSimulator
) -> None:
    assert "id='grafana'" not in get(served, "?format=html").text  # none configured
    dashboard = "https://grafana.example/d/ingestion-tenant/ingestion-failures-tenant?orgId=1"
    running = start(serve, rezolve, failure_details={"dashboard_url": dashboard})
    assert f"<a id='grafana' href='{dashboard}'>" in get(running, "?format=html").text
    one = get(running, f"?format=html&tenant={TENANT_A}").text
    assert f"<a id='grafana' href='{dashboard}&amp;var-tenant={TENANT_A}'>" in one
