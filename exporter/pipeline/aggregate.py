"""Streaming aggregation of one poll's records into counts per label set."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.pipeline.classify import Classifier
from exporter.pipeline.result import (
    Detail,
    Entry,
    Key,
    LabelKey,
    Place,
    PollResult,
    build,
    rows_by_labels,
    times_by_place,
)
from exporter.records import SCOPE_SEPARATOR, FailureRecord, PollError


@dataclass(frozen=True, slots=True)
class DetailLimits:
    """``failure_details``: how many records a source keeps details of, and of each message."""

    max_records: int
    message_max_chars: int


# Longer label values are cut: a hostile or broken platform must not bloat every scrape.
MAX_LABEL_CHARS = 256


def safe_label(value: str) -> str:
    """A label value every scraper reads: valid UTF-8 (a lone surrogate becomes U+FFFD) and at
    most MAX_LABEL_CHARS long. Quotes, backslashes and newlines are the encoder's to escape."""
    if not value.isascii():
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value if len(value) <= MAX_LABEL_CHARS else f"{value[: MAX_LABEL_CHARS - 1]}\u2026"


def retry_label(retry_count: int, cap: int) -> str:
    return f"{cap}+" if retry_count >= cap else str(max(retry_count, 0))


class PollAggregator:
    """Receives a source's records one at a time (the source's sink) and counts them."""

    def __init__(
        self,
        *,
        classifier: Classifier,
        retry_count_cap: int,
        max_series: int,
        owns_tenant: Callable[[str], bool],
        deadline: float,
        tenant: str | None = None,
        platform: str | None = None,
        details: DetailLimits | None = None,
        earlier: Mapping[Key, Detail] | None = None,
        seen_at: float = 0.0,
        since: float | None = None,
        keep_identities: bool = False,
    ) -> None:
        """``details`` keeps what section 9 serves; ``earlier`` (the previous result's details)
        and ``seen_at`` (this poll's start) give each record its ``first_seen``. ``since`` makes
        the poll incremental: the source sends only what changed since then, and ``finish``
        merges it into the previous result. ``keep_identities`` keeps each record's identity in
        its entry, for a state written to disk (a key is a hash that only this process knows)."""
        self.deadline = deadline
        self.since = since
        self._watermark: float | None = None
        self._classifier = classifier
        self._cap = retry_count_cap
        self._max_series = max_series
        self._owns = owns_tenant
        self._tenant = tenant
        self._platform = platform
        self._keep_identities = keep_identities
        self._entries: dict[Key, Entry] = {}
        # Per label set: [the labels (one tuple shared by its entries), count, oldest, newest].
        self._slots: dict[LabelKey, list[Any]] = {}
        self._dropped: set[LabelKey] = set()
        # Label sets whose oldest or newest time left with a revised record (see ``revise``).
        self._stale: set[LabelKey] = set()
        self._scanned = 0
        # Label values repeat: each raw value is made safe once, each tenant's shard asked once.
        self._safe: dict[str, str] = {}
        self._owned: dict[str, bool] = {}
        self._retry_labels = [retry_label(n, retry_count_cap) for n in range(max(retry_count_cap, 0) + 1)]
        self._rows: dict[Key, int] = {}
        self.failures: dict[str, PollError] = {}
        # What a source says of its poll for people, each once (docs/reference.md, Platforms, AEP's fallback).
        self.warnings: list[str] = []
        self._limits = details
        self._earlier: Mapping[Key, Detail] = earlier or {}
        self._seen_at = seen_at
        self._details: dict[Key, Detail] = {}
        # One copy of each message and location folder: they repeat heavily.
        self._shared: dict[str, str] = {}
        self._details_truncated = False

    def wants(self, tenant: str) -> bool:
        """Whether records of this tenant belong to this exporter's shard (sources may skip work)."""
        return self._owns_label(self._tenant or self._safe_label(tenant))

    def _safe_label(self, value: str) -> str:
        safe = self._safe.get(value)
        if safe is None:
            safe = self._safe[value] = safe_label(value)
        return safe

    def _owns_label(self, tenant: str) -> bool:
        owned = self._owned.get(tenant)
        if owned is None:
            owned = self._owned[tenant] = self._owns(tenant)
        return owned

    def add(self, record: FailureRecord) -> None:
        # The hot path of every poll (once per record): lookups are cached, calls kept few.
        self._scanned += 1
        tenant = self._tenant or self._safe.get(record.tenant) or self._safe_label(record.tenant)
        if not self._owns_label(tenant):
            return
        key = hash(record.identity)
        if key in self._entries:
            return
        error_type = self._classifier.resolve(record.reported_type, record.message)
        platform = self._platform or self._safe.get(record.platform) or self._safe_label(record.platform)
        retry = record.retry_count
        labels = (
            tenant,
            platform,
            error_type,
            self._retry_labels[retry] if 0 <= retry < self._cap else retry_label(retry, self._cap),
        )
        identity = record.identity if self._keep_identities else ()
        if not self._place(key, labels, record.failed_at, record.scope, identity):
            return
        if record.rows is not None:
            self._rows[key] = record.rows
        limits = self._limits
        if limits is None:
            return
        details = self._details
        if len(details) >= limits.max_records and key not in details:
            self._details_truncated = True
            return
        # What a person reads of it (see ``Detail``), each repeated text kept once.
        shared = self._shared
        message = record.message[: limits.message_max_chars]
        message = shared.setdefault(message, message)
        name, location = record.name, record.location
        folder = bool(name) and location.endswith(name)
        if folder:
            location = location[: -len(name)]
            location = shared.setdefault(location, location)
        earlier = self._earlier.get(key)
        first_seen = earlier.first_seen if earlier is not None else self._seen_at
        joined = "/".join(record.identity)
        details[key] = build(
            Detail, (joined, name, location, message, record.retry_count, first_seen, folder)
        )

    def revise(self, record: FailureRecord) -> None:
        """A record already added is now as ``record`` says (a later run failed it again): it is
        counted as it is now, not as it was. Not a new record: ``scanned`` stays as it is."""
        key = hash(record.identity)
        earlier = self._entries.pop(key, None)
        if earlier is not None:
            self._take_back(earlier)
        self._rows.pop(key, None)
        self._scanned -= 1  # ``add`` counts it scanned again
        self.add(record)
        if key not in self._entries:  # beyond the series cap now: no detail either
            self._details.pop(key, None)

    def _take_back(self, entry: Entry) -> None:
        """Undo an entry's count. A label set left empty is gone (it frees its place under the
        series cap); one whose oldest or newest time may have left is worked out again at
        ``finish``."""
        labels, failed_at, _, _ = entry
        slot = self._slots[labels]
        slot[1] -= 1
        if slot[1] == 0:
            del self._slots[labels]
            self._stale.discard(labels)
        elif failed_at is not None and failed_at in (slot[2], slot[3]):
            self._stale.add(labels)

    def changed_at(self, moment: float) -> None:
        if self._watermark is None or moment > self._watermark:
            self._watermark = moment

    def fail(self, scope: str, error: PollError) -> None:
        """One part of the poll failed; its previous records are kept (docs/reference.md, Counting)."""
        self.failures.setdefault(scope, error)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def _place(
        self, key: Key, labels: LabelKey, failed_at: float | None, scope: str, identity: tuple[str, ...]
    ) -> bool:
        """Count a record; False if its label set is beyond the series cap (so not counted)."""
        slot = self._slots.get(labels)
        if slot is None:
            if len(self._slots) >= self._max_series:
                self._dropped.add(labels)
                return False
            slot = self._slots[labels] = [labels, 0, None, None]
        slot[1] += 1
        self._entries[key] = build(Entry, (slot[0], failed_at, scope, identity))
        if failed_at is not None:
            if slot[2] is None or failed_at < slot[2]:
                slot[2] = failed_at
            if slot[3] is None or failed_at > slot[3]:
                slot[3] = failed_at
        return True

    def _by_place(self) -> tuple[dict[Place, float], dict[Place, float]]:
        """The oldest and newest failed_at of each (tenant, platform), from the label sets'."""
        if self._stale:
            self._recompute_stale()
        return times_by_place(self._slots.values())

    def _recompute_stale(self) -> None:
        """The oldest and newest time of each stale label set, from its entries: one pass."""
        stale = self._stale
        for labels in stale:
            slot = self._slots[labels]
            slot[2] = slot[3] = None
        for labels, failed_at, _, _ in self._entries.values():
            if failed_at is not None and labels in stale:
                slot = self._slots[labels]
                if slot[2] is None or failed_at < slot[2]:
                    slot[2] = failed_at
                if slot[3] is None or failed_at > slot[3]:
                    slot[3] = failed_at
        stale.clear()

    def finish(self, previous: PollResult | None) -> PollResult:
        """The poll's result, with the previous records of every failed scope carried over; of
        an incremental poll, with every previous record it did not send again."""
        incremental = self.since is not None and previous is not None
        watermark = self._watermark
        if incremental and previous is not None and previous.watermark is not None:
            watermark = previous.watermark if watermark is None else max(watermark, previous.watermark)
        if previous is not None and (self.failures or incremental):
            failures = self.failures
            for key, (labels, failed_at, scope, identity) in previous.entries.items():
                # A scope may be a part of a larger one (``list > item``) that failed whole.
                failed = scope in failures or (
                    SCOPE_SEPARATOR in scope and scope.partition(SCOPE_SEPARATOR)[0] in failures
                )
                if (incremental or failed) and key not in self._entries:
                    placed = self._place(key, labels, failed_at, scope, identity)
                    rows = previous.rows.get(key)
                    if placed and rows is not None:
                        self._rows[key] = rows
                    detail = previous.details.get(key)
                    if placed and detail is not None and self._limits is not None:
                        if len(self._details) < self._limits.max_records:
                            self._details[key] = detail
                        else:
                            self._details_truncated = True
        oldest, newest = self._by_place()
        return PollResult(
            entries=self._entries,
            counts={labels: count for labels, count, _, _ in self._slots.values()},
            oldest=oldest,
            newest=newest,
            scanned=self._scanned,
            # A label set refused once may have found room later, when a revised record left one.
            dropped=len(self._dropped.difference(self._slots)),
            details=self._details,
            details_truncated=self._details_truncated,
            watermark=watermark,
            since_full_read=previous.since_full_read + 1 if incremental and previous is not None else 0,
            rows=self._rows,
            failed_rows=rows_by_labels(self._entries, self._rows),
        )
