"""The /failures page in a real browser: Debian's Chromium, headless, driven by Playwright. On the
demo, the causes add up to the files, a cause's link shows its files, a select filters, and no
cell is wider than the window, at 1400 and 800 pixels. It filters by tenant with the page's own
form, follows a paging link, shows a file named like a script as text (no script runs), and
leaves screenshots as test artifacts."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from exporter.serving.patterns import message_pattern
from exporter.simulators.aep import AepSimulator, SimBatch, validation_file
from exporter.simulators.rezolve import RezolveFile, RezolveSimulator
from tests.conftest import ROOT, TENANT_A, TENANT_B, Listening, Served, eventually, listening, rezolve_source

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
SCRIPT = "<script>alert('pwned')</script>.pdf"
# The flags a closed network and a root user need (no sandbox, no calls home).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `make test`, which installs it")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def served(serve: Any, rezolve: RezolveSimulator) -> Served:
    now = time.time()
    tenants = []
    for tenant, domain, count in ((TENANT_A, "acme.rezolve.ai", 4), (TENANT_B, "globex.rezolve.ai", 7)):
        tenants.append({"tenant_id": tenant, "rezolve_domain": domain, "platforms": ["sharepoint"]})
        for n in range(count):
            name = SCRIPT if (tenant, n) == (TENANT_B, 0) else f"{domain.split('.')[0]}-report-{n}.pdf"
            rezolve.put(
                tenant,
                "sharepoint",
                RezolveFile(f"{tenant[:4]}-{n}", name, "ACCESS_DENIED", "Access is denied", now - 60 * n, n),
            )
    running: Served = serve({"poll_interval": "1h", "sources": [rezolve_source(rezolve, tenants=tenants)]})
    eventually(lambda: httpx.get(f"{running.url}/readyz").status_code == 200)
    return running


def test_filter_by_tenant_follow_a_page_link_and_show_a_script_name_as_text(
    browser: Browser, served: Served
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{served.url}/failures?format=html&limit=3")
    assert page.locator("#summary").inner_text() == "11 failed file(s)"
    assert page.locator(".paging.top .where").inner_text() == "1\u20133 of 11"
    assert page.locator("#health li.up").count() == 1

    page.select_option("select[name=tenant]", TENANT_B)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("#summary").inner_text() == "7 failed file(s)"
    tenants = page.locator("#records td.tenant .id")
    assert tenants.count() == 3 and {tenants.nth(n).get_attribute("title") for n in range(3)} == {TENANT_B}
    assert tenants.first.inner_text() == TENANT_B[:8] + "…"  # shortened, whole on hover

    with page.expect_navigation():
        page.click(".paging.bottom a[rel=next]")
    assert "offset=3" in page.url and f"tenant={TENANT_B}" in page.url
    assert page.locator(".paging.top .where").inner_text() == "4\u20136 of 7"

    page.goto(f"{served.url}/failures?format=html&tenant={TENANT_B}")
    names = page.locator("#records td.name").all_inner_texts()
    assert SCRIPT in names  # shown as text
    assert dialogs == [] and page.locator("#records script").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "failures-page.png"), full_page=True)
    assert (ARTIFACTS / "failures-page.png").stat().st_size > 10_000
    page.close()


def test_failed_rows_are_a_column_a_click_sorts(browser: Browser, serve: Any) -> None:
    aep = AepSimulator().start()
    try:
        created = int((time.time() - 600) * 1000)
        for n, rows in enumerate((40, 3, 250)):
            error = {"code": f"INGEST-{1550 + n}-400", "description": "Required field 'x' is missing"}
            aep.add_batch(
                SimBatch(
                    f"P{n}", created - n * 1000, "success", [{**error, "recordCount": rows}], failed_rows=rows
                )
            )
        aep.add_batch(
            SimBatch("F", created, "failed", [], {"part-0.json": validation_file("malformed JSON")})
        )
        running: Served = serve({"poll_interval": "1h", "sources": [aep.source_config("aep")]})
        eventually(lambda: httpx.get(f"{running.url}/readyz").status_code == 200)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{running.url}/failures?format=html")
        cells = page.locator("#records td.rows")
        assert cells.count() == 4
        header = page.locator("#records th[data-sort=rows]")
        header.click()
        assert cells.all_inner_texts() == ["250", "40", "3", ""]  # largest first, none last
        assert header.get_attribute("aria-sort") == "descending"
        header.click()
        assert cells.all_inner_texts() == ["3", "40", "250", ""]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "failures-rows.png"), full_page=True)
        page.close()
    finally:
        aep.stop()


@pytest.fixture(scope="module")
def demo() -> Iterator[Listening]:
    with listening([sys.executable, "-m", "exporter", "--demo"], ROOT, ready_seconds=60) as running:
        yield running


WIDEST_CELL = (
    "Math.max(...Array.from(document.querySelectorAll('td, th'), c => c.getBoundingClientRect().width))"
)
# The table fits its box: nothing to scroll sideways to (a card a record below 1000 pixels).
OVERFLOW = "(s => s.scrollWidth - s.clientWidth)(document.querySelector('.scroll'))"


@pytest.mark.parametrize("width", [1400, 800])
def test_the_triage_page_on_the_demo(browser: Browser, demo: Listening, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{demo.url}/failures?format=html")
    # The causes (with "more" for those past the first ten) add up to the files of this render.
    total = int(page.locator("#summary").inner_text().split()[0])
    shown = [int(text) for text in page.locator("#causes-list .count").all_inner_texts()]
    more = page.locator("#causes .more")
    rest = int(more.get_attribute("data-files") or 0) if more.count() else 0
    assert shown and sum(shown) + rest == total == int(
        page.locator("#causes-list").get_attribute("data-total") or -1
    )
    assert shown == sorted(shown, reverse=True)
    assert page.evaluate(WIDEST_CELL) <= width and page.evaluate(OVERFLOW) <= 0
    assert page.locator("#error-types li").count() >= 2 and page.locator("#health li").count() >= 4
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"triage-{width}.png"), full_page=True)
    page.screenshot(path=str(ARTIFACTS / f"triage-{width}-top.png"))  # what one sees first

    # A cause's link shows its files: every message has its pattern.
    pattern = page.locator("#causes-list .pattern").first.inner_text()
    with page.expect_navigation():
        page.locator("#causes-list a.cause").first.click()
    messages = page.locator("#records td.message").all_inner_texts()
    assert messages and {message_pattern(message) for message in messages} == {pattern}
    assert pattern in page.locator("#chosen").inner_text()
    assert page.evaluate(WIDEST_CELL) <= width and page.evaluate(OVERFLOW) <= 0

    # A select filters: the error types present, with their counts.
    page.goto(f"{demo.url}/failures?format=html")
    options = page.locator("select[name=error_type] option")
    chosen = options.nth(1).get_attribute("value") or ""
    page.select_option("select[name=error_type]", chosen)
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    types = page.locator("#records td.error_type").all_inner_texts()
    assert types and set(types) == {chosen}
    assert {text.strip() for text in page.locator("#by-error-type .label").all_inner_texts()} == {chosen}
    page.close()
