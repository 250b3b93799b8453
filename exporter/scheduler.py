"""One APScheduler job per lane: first poll at once, then every interval, with jitter."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter.pipeline.lane import Lane
from exporter.runtime import Changes

# Jitter spreads sources with the same interval over time; capped so long intervals stay regular.
JITTER_FRACTION = 0.1
MAX_JITTER_SECONDS = 30.0


def jitter_for(interval: float) -> float:
    return min(interval * JITTER_FRACTION, MAX_JITTER_SECONDS)


def build_scheduler(lanes: Iterable[Lane]) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    add_jobs(scheduler, lanes)
    return scheduler


def add_jobs(scheduler: AsyncIOScheduler, lanes: Iterable[Lane]) -> None:
    now = datetime.now(UTC)
    for index, lane in enumerate(lanes):
        interval = lane.settings.interval
        scheduler.add_job(
            lane.poll,
            "interval",
            id=lane.job_id,
            name=f"poll {lane.name}",
            seconds=interval,
            jitter=jitter_for(interval),
            # Start at once, a few milliseconds apart so many sources do not fire together.
            next_run_time=now + timedelta(milliseconds=10 * index),
            max_instances=1,  # never two polls of one source at once
            coalesce=True,
            misfire_grace_time=max(int(interval), 1),
        )


def apply_changes(scheduler: AsyncIOScheduler, changes: Changes) -> None:
    """After a reload: kept lanes keep their jobs and schedules; stopped lanes lose theirs;
    started lanes (new or changed sources) get jobs whose first poll is at once."""
    for lane in changes.stopped:
        if scheduler.get_job(lane.job_id) is not None:
            scheduler.remove_job(lane.job_id)
    add_jobs(scheduler, changes.started)
