"""A state write killed at any moment (SIGKILL, many times) leaves a state that a restart reads
whole: the one written before or the one being written, never a mix of the two."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

from exporter.pipeline.aggregate import DetailLimits, PollAggregator
from exporter.pipeline.classify import Classifier
from exporter.pipeline.persist import StateStore
from exporter.pipeline.state import SourceState
from exporter.records import FailureRecord
from tests.conftest import eventually

START = 1_765_000_000.0
FINGERPRINT = "f" * 64
KILLS = 20


def a_state(version: int) -> SourceState:
    """Version 1 or 2 of a source's state: 20,000 records (and ``version`` more), each record's
    message and the counters saying which version they belong to."""
    out = PollAggregator(
        classifier=Classifier(),
        retry_count_cap=5,
        max_series=10_000,
        owns_tenant=lambda _: True,
        deadline=1e18,
        details=DetailLimits(100_000, 512),
        seen_at=START,
        keep_identities=True,
    )
    for i in range(20_000 + version):
        tenant = f"t{i % 7}"
        out.add(
            FailureRecord(
                tenant=tenant,
                platform="sharepoint",
                identity=(tenant, f"file-{i}"),
                message=f"version {version}: cannot parse page {i}",
                reported_type="PARSE_ERROR",
                failed_at=START + i,
                scope=tenant,
                name=f"file-{i}.pdf",
                location=f"https://files.example/{tenant}/file-{i}.pdf",
            )
        )
    state = SourceState(name="s", kind="rezolve", interval=60, stale_after=180)
    state.record_result(out.finish(None), {}, START, START + 1)
    state.discovered[("t0", "sharepoint", "PARSE_ERROR")] = version
    return state


def write_until_killed(directory: str) -> None:
    """The child: writes version 1, then 2, then 1 ... as fast as it can."""
    store = StateStore(Path(directory), max_age=1e12)
    states = [a_state(1), a_state(2)]
    while True:
        for state in states:
            store.save(state, FINGERPRINT)


def version_of(directory: Path) -> int:
    """Restart as the exporter does (leftovers removed, the state read); the version it holds,
    after checking that every part of it is of that one version."""
    store = StateStore(directory, max_age=1e12)
    store.remove_leftovers()
    saved = store.load("s", FINGERPRINT)
    assert saved is not None, "the state could not be resumed"
    version = saved.discovered[("t0", "sharepoint", "PARSE_ERROR")]
    assert version in (1, 2)
    assert len(saved.result.entries) == 20_000 + version
    assert {detail.message.split(":")[0] for detail in saved.result.details.values()} == {
        f"version {version}"
    }
    assert sum(saved.result.counts.values()) == 20_000 + version
    return version


def test_a_write_killed_at_any_moment_leaves_a_whole_state(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    rng = random.Random(20261205)
    versions, cut_short = set(), 0
    for _ in range(KILLS):
        child = context.Process(target=write_until_killed, args=(str(tmp_path),))
        child.start()
        try:
            # Past the child's start-up, into its writes: the file is replaced at least once more.
            first = eventually(lambda: (tmp_path / "s.state").exists() and (tmp_path / "s.state").stat(), 60)
            eventually(lambda f=first: (tmp_path / "s.state").stat().st_mtime_ns != f.st_mtime_ns, 60)
            time.sleep(rng.uniform(0, 0.15))
        finally:
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        cut_short += any(tmp_path.glob(".s.state.*.tmp"))
        versions.add(version_of(tmp_path))
        assert not any(tmp_path.glob(".s.state.*.tmp"))
    # The kills fell in the middle of writes, and both versions were read back.
    assert cut_short >= KILLS // 4, cut_short
    assert versions == {1, 2}
