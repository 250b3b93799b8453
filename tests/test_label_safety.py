"""Label values come from platforms, so they may be anything: quotes, backslashes, newlines,
control characters, lone surrogates (a JSON "\\udcff" escape decodes to one), or megabytes.
The exposition stays valid for prometheus_client's parsers and for promtool."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from exporter.pipeline.aggregate import safe_label
from tests.conftest import debian_tool, parse_exposition, series
from tests.test_core import Core, record

HOSTILE = [
    'quo"te',
    "back\\slash",
    "new\nline",
    "tab\tand\rreturn",
    "nul\x00 and escape\x1b[31m",
    "lone surrogate \udcff here",
    "emoji 🧯 and ümlauts",
    "x" * 10_000,
    "",
]


@pytest.fixture(scope="module")
def hostile() -> Core:
    core = Core(max_series_per_source=1000)
    core.source.records = [
        record(
            f"f{i}", tenant=value, platform=value or "empty", error_type=None, message=value, failed_at=1.7e9
        )
        for i, value in enumerate(HOSTILE)
    ]
    assert core.poll() is True
    return core


def test_every_hostile_value_is_a_series_of_its_own(hostile: Core) -> None:
    tenants = {dict(labels)["tenant"] for labels in hostile.series("ingestion_failed_files")}
    assert tenants == {safe_label(v) for v in HOSTILE}
    assert len(tenants) == len(HOSTILE)


def test_the_text_exposition_parses_back_to_the_same_values(hostile: Core) -> None:
    found = series(parse_exposition(hostile.exporter.snapshot.text.decode()), "ingestion_failed_files")
    assert {dict(labels)["tenant"] for labels in found} == {safe_label(v) for v in HOSTILE}


def test_the_openmetrics_exposition_parses(hostile: Core) -> None:
    text = hostile.exporter.snapshot.openmetrics.decode()
    families = {f.name: f for f in openmetrics_families(text)}
    assert len(families["ingestion_failed_files"].samples) == len(HOSTILE)


def test_promtool_accepts_the_exposition(hostile: Core) -> None:
    checked = subprocess.run(
        [debian_tool("promtool"), "check", "metrics"],
        input=hostile.exporter.snapshot.text,
        capture_output=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
