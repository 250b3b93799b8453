"""The README against the running program, so that the docs cannot drift: every command of
"Running it" and every flag it lists run in a fresh virtualenv, the example configuration passes
--check, and every documented metric, label set, endpoint and source field exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.simulators.aep import AepSimulator, SimBatch
from exporter.simulators.rezolve import RezolveSimulator
from exporter.sources import CONFIG_TYPES, KINDS
from tests.conftest import ROOT, TENANT_A, listening, rezolve_file, rezolve_source

README = (ROOT / "README.md").read_text()
# What the example configuration's ${VAR}s are set to: long enough not to warn, and a
# connection string the table client parses.
EXAMPLE_ENV = {
    "REZOLVE_TOKEN": "example-token-0001",
    "AZURE_TABLES_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=ZXhhbXBsZS1rZXktZm9yLXRoZS1kb2NzLXRlc3Q=;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
    "COMMVAULT_PASSWORD": "example-password",
    "UNSTRUCTURED_API_KEY": "example-api-key",
    "AEP_API_KEY": "example-api-key",
    "AEP_CLIENT_ID": "example-client-id",
    "AEP_CLIENT_SECRET": "example-client-secret",
}


def section(title: str) -> str:
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", README, re.M | re.S)
    assert match is not None, title
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def table_names(text: str) -> list[str]:
    """The backticked names of a table's first column."""
    return [name for row in re.findall(r"^\| (.+?) \|", text, re.M) for name in re.findall(r"`([^`]+)`", row)]


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The console script of a fresh virtualenv with the package installed as the README says."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", str(ROOT)],
        check=True,
        timeout=600,
    )
    return venv / "bin" / "ingestion-failure-exporter"


def example_configuration() -> dict[str, Any]:
    """The Configuration section's YAML: the document, plus the sources of the block after it."""
    first, more = code_blocks(section("Configuration"), "yaml")[:2]
    document = yaml.safe_load(first)
    document["sources"] += yaml.safe_load(more)
    return dict(document)


def run(program: Path, *args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **EXAMPLE_ENV},
    )


def test_the_example_configuration_passes_check(program: Path, tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(yaml.safe_dump(example_configuration()))
    checked = run(program, "--config", "config.yml", "--check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"configuration OK: {len(example_configuration()['sources'])} source(s)\n"


def test_every_flag_the_readme_lists_is_the_programs(program: Path, tmp_path: Path) -> None:
    flags = set(re.findall(r"`(--[a-z][\w.-]*)", section("Running it")))
    assert {"--config", "--once", "--check", "--demo", "--web.listen-address"} <= flags
    shown = run(program, "--help", cwd=tmp_path).stdout
    missing = sorted(flag for flag in flags if not re.search(rf"{re.escape(flag)}\b", shown))
    assert missing == []
    assert (
        run(program, "--version", cwd=tmp_path)
        .stdout.strip()
        .endswith(
            re.search(r'__version__ = "(.+)"', (ROOT / "exporter" / "__init__.py").read_text()).group(1)  # type: ignore[union-attr]
        )
    )


def test_every_documented_source_field_is_a_field_of_its_kind() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| .+ \|$", section("Configuration"), re.M)
    models = dict(zip(KINDS, CONFIG_TYPES, strict=True))
    kinds = {kind: fields for kind, fields in rows if kind in models}
    assert set(kinds) == set(models)
    for kind, fields in kinds.items():
        model = models[kind]
        # Before the first parenthesis of each item: the field itself, not its notes.
        named = re.findall(r"`(\w+)`", re.sub(r"\([^()]*\)", "", fields))
        fields_and_aliases = {
            alias or name for name, field in model.model_fields.items() for alias in [field.alias]
        }
        nested = [f for f in named if f not in model.model_fields and f not in fields_and_aliases]
        known_nested = {"tenant_id", "rezolve_domain", "platforms", "reconcile_every", "overlap"}
        assert set(nested) <= known_nested, (kind, nested)


@pytest.fixture
def platforms() -> Iterator[tuple[RezolveSimulator, AepSimulator]]:
    rezolve = RezolveSimulator(token="t0ken-for-the-docs").start()
    aep = AepSimulator().start()
    try:
        rezolve.add_tenant(TENANT_A, "acme.rezolve.ai")
        rezolve.put(TENANT_A, "sharepoint", rezolve_file("f", "PARSE_ERROR", "", time.time(), 0))
        aep.add_batch(
            SimBatch(
                "P1",
                int(time.time() * 1000) - 60_000,
                "success",
                [
                    {
                        "code": "INGEST-1212-400",
                        "description": "Required field 'x' is missing",
                        "recordCount": 3,
                    }
                ],
                failed_rows=3,
            )
        )
        yield rezolve, aep
    finally:
        rezolve.stop()
        aep.stop()


def test_every_command_metric_and_endpoint_of_running_it(
    program: Path, tmp_path: Path, platforms: tuple[RezolveSimulator, AepSimulator]
) -> None:
    rezolve, aep = platforms
    config = {
        "poll_interval": "1h",
        "state_dir": str(tmp_path / "state"),
        "sources": [rezolve_source(rezolve), aep.source_config("aep")],
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    commands = [
        line.split("#")[0].split()
        for line in code_blocks(section("Running it"), "sh")[0].splitlines()
        if line.startswith("ingestion-failure-exporter ")
    ]
    served = None
    for command in commands:
        args = command[1:]
        if "--once" in args:
            done = run(program, *args, cwd=tmp_path)
            assert done.returncode == 0, (args, done.stderr)
            assert "ingestion_failed_files{" in done.stdout
            if "--failures" in args:
                assert (tmp_path / args[args.index("--failures") + 1]).exists()
        elif "--check" in args:
            assert run(program, *args, cwd=tmp_path).returncode == 0
        elif "--demo" in args:
            continue  # tests/test_demo_install.py runs it from a fresh virtualenv
        else:
            served = args
    assert served == ["--config", "config.yml"]
    argv = [str(program), *served, "--enable-lifecycle"]
    with listening(argv, tmp_path, listen_flag="--web.listen-address", ready_seconds=30) as running:
        url = running.url
        for path in table_names(section("HTTP endpoints")):
            method, _, path = path.rpartition(" ")
            answer = httpx.request(method or "GET", f"{url}{path}")
            assert answer.status_code == 200, path
        for also in ("/-/healthy", "/-/ready"):
            assert httpx.get(f"{url}{also}").status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        documented = [n for n in table_names(section("Metrics")) if n.startswith(("ingestion_", "process_"))]
        documented += re.findall(r"`(process_\w+)`", section("Metrics"))
        missing = [
            n for n in documented if n != "process_*" and not re.search(rf"^{n}(\{{| )", metrics, re.M)
        ]
        histogram = "ingestion_source_poll_duration_seconds"
        assert missing == [histogram] and f"{histogram}_bucket{{" in metrics
