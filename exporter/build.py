"""What this build of the exporter is: the labels of ``ingestion_exporter_build_info``, as Go
exporters' ``*_build_info`` carry them."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

from exporter import __version__

PACKAGE = Path(__file__).resolve().parent


@functools.cache
def revision() -> str:
    """The commit the exporter runs from, where it can be known (a git checkout of this
    project); else "" (an empty label is no label to Prometheus)."""
    try:
        found = subprocess.run(
            ["git", "-C", str(PACKAGE), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = found.stdout.split()
    # Only our own checkout: an installed copy may sit inside someone else's repository.
    if found.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() / "exporter" != PACKAGE:
        return ""
    return lines[1]


def build_labels() -> tuple[str, str, str]:
    """(version, revision, python_version)."""
    return __version__, revision(), platform.python_version()
