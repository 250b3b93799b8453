"""One APScheduler job per source: first poll at once, then every interval, with jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter.runtime import Exporter

# Jitter spreads sources with the same interval over time; capped so long intervals stay regular.
JITTER_FRACTION = 0.1
MAX_JITTER_SECONDS = 30.0


def jitter_for(interval: float) -> float:
    return min(interval * JITTER_FRACTION, MAX_JITTER_SECONDS)


def build_scheduler(exporter: Exporter) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    now = datetime.now(UTC)
    for index, (name, state) in enumerate(exporter.states.items()):
        scheduler.add_job(
            exporter.poll,
            "interval",
            args=[name],
            id=name,
            name=f"poll {name}",
            seconds=state.interval,
            jitter=jitter_for(state.interval),
            # Start at once, a few milliseconds apart so many sources do not fire together.
            next_run_time=now + timedelta(milliseconds=10 * index),
            max_instances=1,  # never two polls of one source at once
            coalesce=True,
            misfire_grace_time=max(int(state.interval), 1),
        )
    return scheduler
