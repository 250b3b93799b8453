"""The container image's recipe: hadolint clean, and what operators expect of an exporter's image.
(No container engine runs here; README says how to build it.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is not installed: run `make test`, which installs it"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_on_a_pinned_slim_base_and_a_non_root_user() -> None:
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert len(bases) == 2 and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base) for base in bases)
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert "pip wheel" not in final and "gcc" not in final  # nothing is built in the final image
    assert re.search(r"^USER 65532$", final, re.M)
    assert re.search(r"^EXPOSE 9890$", final, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", final, re.M)
    assert re.search(r'^ENTRYPOINT \["ingestion-failure-exporter"\]$', final, re.M)


def test_only_the_package_goes_into_the_build_context() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    # An allow-list: everything out, then only what the image is built from back in.
    assert lines[0] == "*"
    assert [line for line in lines if line.startswith("!")] == ["!pyproject.toml", "!README.md", "!exporter/"]
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
    assert copied == ["pyproject.toml README.md", "exporter"]
