"""Streaming aggregation of one poll's records into counts per label set."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from exporter.pipeline.classify import Classifier
from exporter.records import FailureRecord, PollError

# (tenant, platform, error_type, retry_count label)
LabelKey = tuple[str, str, str, str]
# What is kept of a record: its labels, its failed_at, its scope. Message, URL and the like are
# not kept, so memory grows with label sets, plus one small digest per identity (needed to
# tell discovered and resolved records apart between polls).
Entry = tuple[LabelKey, float | None, str]
# What a person reads of a record (SPEC section 9), kept apart from what is counted and only when
# the drill-down is on: id, name, location, message (cut), retry_count (uncapped), first_seen,
# and whether the location is kept as the part before the name. Locations mostly end with the
# name under a folder shared by many files: that folder is kept once (see ``location_of``).
Detail = tuple[str, str, str, str, int, float, bool]


def location_of(detail: Detail) -> str:
    return detail[2] + detail[1] if detail[6] else detail[2]


@dataclass(frozen=True, slots=True)
class DetailLimits:
    """``failure_details``: how many records a source keeps details of, and of each message."""

    max_records: int
    message_max_chars: int


# Longer label values are cut: a hostile or broken platform must not bloat every scrape.
MAX_LABEL_CHARS = 256


def identity_digest(identity: tuple[str, ...]) -> bytes:
    # surrogatepass: a lone surrogate (a JSON "\udcff" escape) is as good an identity as any.
    return hashlib.blake2b("\x1f".join(identity).encode("utf-8", "surrogatepass"), digest_size=12).digest()


def safe_label(value: str) -> str:
    """A label value every scraper reads: valid UTF-8 (a lone surrogate becomes U+FFFD) and at
    most MAX_LABEL_CHARS long. Quotes, backslashes and newlines are the encoder's to escape."""
    if not value.isascii():
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value if len(value) <= MAX_LABEL_CHARS else f"{value[: MAX_LABEL_CHARS - 1]}\u2026"


def retry_label(retry_count: int, cap: int) -> str:
    return f"{cap}+" if retry_count >= cap else str(max(retry_count, 0))


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one (possibly partial) poll found; immutable once built."""

    entries: Mapping[bytes, Entry]
    counts: Mapping[LabelKey, int]
    oldest: Mapping[tuple[str, str], float]
    newest: Mapping[tuple[str, str], float]
    scanned: int
    dropped: int
    details: Mapping[bytes, Detail] = field(default_factory=dict)
    details_truncated: bool = False
    # For incremental sources: the latest change seen (the platform's clock), and how many
    # incremental polls were merged into this result since its last full read.
    watermark: float | None = None
    since_full_read: int = 0


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
        earlier: Mapping[bytes, Detail] | None = None,
        seen_at: float = 0.0,
        since: float | None = None,
    ) -> None:
        """``details`` keeps what section 9 serves; ``earlier`` (the previous result's details)
        and ``seen_at`` (this poll's start) give each record its ``first_seen``. ``since`` makes
        the poll incremental: the source sends only what changed since then, and ``finish``
        merges it into the previous result."""
        self.deadline = deadline
        self.since = since
        self._watermark: float | None = None
        self._classifier = classifier
        self._cap = retry_count_cap
        self._max_series = max_series
        self._owns = owns_tenant
        self._tenant = tenant
        self._platform = platform
        self._entries: dict[bytes, Entry] = {}
        self._counts: dict[LabelKey, int] = {}
        self._interned: dict[LabelKey, LabelKey] = {}
        self._oldest: dict[tuple[str, str], float] = {}
        self._newest: dict[tuple[str, str], float] = {}
        self._dropped: set[LabelKey] = set()
        self._scanned = 0
        self.failures: dict[str, PollError] = {}
        self._limits = details
        self._earlier: Mapping[bytes, Detail] = earlier or {}
        self._seen_at = seen_at
        self._details: dict[bytes, Detail] = {}
        # One copy of each message and location folder: they repeat heavily.
        self._shared: dict[str, str] = {}
        self._details_truncated = False

    def wants(self, tenant: str) -> bool:
        """Whether records of this tenant belong to this exporter's shard (sources may skip work)."""
        return self._owns(self._tenant or safe_label(tenant))

    def add(self, record: FailureRecord) -> None:
        self._scanned += 1
        tenant = self._tenant or safe_label(record.tenant)
        if not self._owns(tenant):
            return
        key = identity_digest(record.identity)
        if key in self._entries:
            return
        error_type = self._classifier.resolve(record.reported_type, record.message)
        platform = self._platform or safe_label(record.platform)
        labels = (tenant, platform, error_type, retry_label(record.retry_count, self._cap))
        if self._place(key, labels, record.failed_at, record.scope) and self._limits is not None:
            self._keep_detail(key, record, self._limits)

    def _keep_detail(self, key: bytes, record: FailureRecord, limits: DetailLimits) -> None:
        if len(self._details) >= limits.max_records:
            self._details_truncated = True
            return
        shared = self._shared
        message = record.message[: limits.message_max_chars]
        message = shared.setdefault(message, message)
        name, location = record.name, record.location
        folder = bool(name) and location.endswith(name)
        if folder:
            location = location[: -len(name)]
            location = shared.setdefault(location, location)
        earlier = self._earlier.get(key)
        first_seen = earlier[5] if earlier is not None else self._seen_at
        identity = "/".join(record.identity)
        self._details[key] = (identity, name, location, message, record.retry_count, first_seen, folder)

    def changed_at(self, moment: float) -> None:
        if self._watermark is None or moment > self._watermark:
            self._watermark = moment

    def fail(self, scope: str, error: PollError) -> None:
        """One part of the poll failed; its previous records are kept (SPEC section 4)."""
        self.failures.setdefault(scope, error)

    def _place(self, key: bytes, labels: LabelKey, failed_at: float | None, scope: str) -> bool:
        """Count a record; False if its label set is beyond the series cap (so not counted)."""
        labels = self._interned.setdefault(labels, labels)
        count = self._counts.get(labels)
        if count is None and len(self._counts) >= self._max_series:
            self._dropped.add(labels)
            return False
        self._counts[labels] = (count or 0) + 1
        self._entries[key] = (labels, failed_at, scope)
        if failed_at is not None:
            pair = (labels[0], labels[1])
            if failed_at < self._oldest.get(pair, float("inf")):
                self._oldest[pair] = failed_at
            if failed_at > self._newest.get(pair, float("-inf")):
                self._newest[pair] = failed_at
        return True

    def finish(self, previous: PollResult | None) -> PollResult:
        """The poll's result, with the previous records of every failed scope carried over; of
        an incremental poll, with every previous record it did not send again."""
        incremental = self.since is not None and previous is not None
        watermark = self._watermark
        if incremental and previous is not None and previous.watermark is not None:
            watermark = previous.watermark if watermark is None else max(watermark, previous.watermark)
        if previous is not None and (self.failures or incremental):
            for key, (labels, failed_at, scope) in previous.entries.items():
                if (incremental or scope in self.failures) and key not in self._entries:
                    placed = self._place(key, labels, failed_at, scope)
                    detail = previous.details.get(key)
                    if placed and detail is not None and self._limits is not None:
                        if len(self._details) < self._limits.max_records:
                            self._details[key] = detail
                        else:
                            self._details_truncated = True
        return PollResult(
            entries=self._entries,
            counts=self._counts,
            oldest=self._oldest,
            newest=self._newest,
            scanned=self._scanned,
            dropped=len(self._dropped),
            details=self._details,
            details_truncated=self._details_truncated,
            watermark=watermark,
            since_full_read=previous.since_full_read + 1 if incremental and previous is not None else 0,
        )
