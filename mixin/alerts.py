"""The recording and alerting rules, from the mixin's configuration.

Two kinds of alert, told apart by what they are about:
- an exporter's polling (down, stale, poll errors, the series cap): per replica, with its
  ``instance``, since each replica polls on its own and the alert says which one fails;
- the failed files themselves (spike, persistent, old, access denied): counted once across
  identical replicas (``max`` over the replica labels), so two replicas raise one alert. Their
  ``failures_url`` asks Prometheus which exporter holds the records.
"""

from __future__ import annotations

from typing import Any

from mixin import Config, in_words, number, seconds

Rule = dict[str, Any]

RECORDING_GROUP = "ingestion-failures.recording"
ALERTING_GROUP = "ingestion-failures.alerts"
# Files at the retry cap: their retry_count label ends in "+" ("5+").
AT_CAP = 'retry_count=~".*\\\\+"'
ACCESS_DENIED = 'error_type="ACCESS_DENIED"'
# Any series about failed files: which exporter has one of an alert's labels holds its records.
FILE_SERIES = '__name__=~"ingestion_failed_files.*"'


def recording_rules(config: Config) -> list[Rule]:
    # The dashboards' heavy queries, computed once per evaluation. Each keeps the job and the
    # replica labels: the dashboards filter by them, and take `max` over replicas themselves.
    keep = f"job, {config.replicas}"
    files = f"ingestion_failed_files{{{config.selects()}}}"
    at_cap = f"ingestion_failed_files{{{config.selects(AT_CAP)}}}"
    discovered = f"ingestion_failed_files_discovered_total{{{config.selects()}}}"
    resolved = f"ingestion_failed_files_resolved_total{{{config.selects()}}}"
    duration = f"ingestion_source_poll_duration_seconds_bucket{{{config.selects()}}}"
    return [
        {
            "record": "source_tenant_platform:ingestion_failed_files:sum",
            "expr": f"sum by ({keep}, source, tenant, platform) ({files})",
        },
        {
            "record": "source_tenant_platform_error_type:ingestion_failed_files:sum",
            "expr": f"sum by ({keep}, source, tenant, platform, error_type) ({files})",
        },
        {
            "record": "source_tenant_platform_retry_count:ingestion_failed_files:sum",
            "expr": f"sum by ({keep}, source, tenant, platform, retry_count) ({files})",
        },
        {
            "record": "source_tenant_platform:ingestion_failed_files_at_retry_cap:sum",
            "expr": f"sum by ({keep}, source, tenant, platform) ({at_cap})",
        },
        {
            "record": "source_tenant_platform_error_type:ingestion_failed_files_discovered:increase1h",
            "expr": f"sum by ({keep}, source, tenant, platform, error_type) (increase({discovered}[1h]))",
        },
        {
            "record": "source_tenant_platform:ingestion_failed_files_resolved:increase1h",
            "expr": f"sum by ({keep}, source, tenant, platform) (increase({resolved}[1h]))",
        },
        {
            "record": "source:ingestion_source_poll_duration_seconds:p95_5m",
            "expr": f"histogram_quantile(0.95, sum by ({keep}, source, le) (rate({duration}[5m])))",
        },
    ]


def failures_url(config: Config, *labels: str, error_type: str | None = None) -> str:
    """The /failures page of an alert's labels, grouped by cause (its files one click away).
    Per-replica alerts carry their ``instance``; the others ask Prometheus which instance holds
    records of those labels (any one of identical replicas will do; of shards, only one has them)."""
    query = "&".join(f"{label}={{{{ $labels.{label} | urlquery }}}}" for label in labels)
    if error_type:
        query += f"&error_type={error_type}"
    page = f"/failures?format=html&group_by=message&{query}"
    scheme = config.exporter_scheme
    if "instance" not in config.replica_labels or labels == ("source",):
        return f"{scheme}://{{{{ $labels.instance }}}}{page}"
    matchers = ", ".join(m for m in (FILE_SERIES, config.selector, *(f"{label}=%q" for label in labels)) if m)
    lookup = (
        f"query (printf `max by (instance) ({{{matchers}}})` "
        + " ".join(f"$labels.{label}" for label in labels)
        + ")"
    )
    holder = (
        f'{{{{ with {lookup} }}}}{{{{ . | sortByLabel "instance" | first | label "instance" }}}}{{{{ end }}}}'
    )
    return f"{scheme}://{holder}{page}"


def alert(
    config: Config,
    name: str,
    expr: str,
    summary: str,
    description: str,
    url: str | None,
) -> Rule:
    settings = getattr(config.alerts, name)
    annotations = {
        "summary": summary,
        "description": description,
        "runbook_url": config.runbook(name),
    }
    if url:
        annotations["failures_url"] = url
    return {
        "alert": name,
        "expr": expr,
        "for": settings.for_,
        "labels": {"severity": settings.severity},
        "annotations": annotations,
    }


def alerting_rules(config: Config) -> list[Rule]:
    a = config.alerts
    sel = config.selects
    per_source = failures_url(config, "source")
    per_place = failures_url(config, "source", "tenant", "platform")
    recorded = f"source_tenant_platform:ingestion_failed_files:sum{{{sel()}}}"
    current = config.dedup(recorded)
    spike = a.IngestionFailedFilesSpike
    normal = config.dedup(f"avg_over_time({recorded}[{spike.baseline}])")
    at_cap = f"source_tenant_platform:ingestion_failed_files_at_retry_cap:sum{{{sel()}}}"
    persistent = a.IngestionPersistentFailures
    stale = a.IngestionSourceStale
    errors = a.IngestionPollErrorsRising
    burst = a.IngestionAccessDeniedBurst
    old = a.IngestionUnresolvedFailuresOld
    denied = f"ingestion_failed_files_discovered_total{{{sel(ACCESS_DENIED)}}}"
    keep = f"job, {config.replicas}"
    return [
        alert(
            config,
            "IngestionSourceDown",
            f"ingestion_source_up{{{sel()}}} == 0",
            "Ingestion source {{ $labels.source }} is failing to poll",
            "Polls of source {{ $labels.source }} (exporter {{ $labels.instance }}) have not succeeded"
            f" completely for {in_words(a.IngestionSourceDown.for_)}. Its failure series are frozen at"
            " their last values and go stale after stale_after. See /sources on the exporter for the"
            " last error.",
            per_source,
        ),
        alert(
            config,
            "IngestionSourceStale",
            f"(time() - ingestion_source_last_success_timestamp_seconds{{{sel()}}})\n"
            f"  > clamp_min({stale.intervals} * ingestion_source_poll_interval_seconds{{{sel()}}},"
            f" {number(seconds(stale.min_age))})",
            "No successful poll of {{ $labels.source }} for {{ $value | humanizeDuration }}",
            "Source {{ $labels.source }} last succeeded {{ $value | humanizeDuration }} ago, more than"
            f" {stale.intervals} poll intervals. Failed-file counts for it are out of date.",
            per_source,
        ),
        alert(
            config,
            "IngestionPollErrorsRising",
            f"sum by ({keep}, source, reason) (increase(ingestion_source_poll_errors_total{{{sel()}}}"
            f"[{errors.window}])) >= {errors.errors}",
            '{{ $labels.source }}: {{ $value | printf "%.0f" }} failed polls ({{ $labels.reason }})'
            f" in {errors.window}",
            'Source {{ $labels.source }} failed {{ $value | printf "%.0f" }} polls in the last'
            f" {in_words(errors.window)} with reason {{{{ $labels.reason }}}}.",
            per_source,
        ),
        alert(
            config,
            "IngestionFailedFilesSpike",
            # The value is the excess over the tenant's own normal.
            f"(\n  {current}\n    - {normal}\n    >= {number(spike.min_excess)}\n)\nand\n"
            f"(\n  {current}\n    > {number(spike.factor)} * {normal}\n)",
            "Failed files spiking for {{ $labels.tenant }} on {{ $labels.platform }} ({{ $labels.source }})",
            '{{ $value | printf "%.0f" }} more failed files than the average over'
            f" {in_words(spike.baseline)} for tenant {{{{ $labels.tenant }}}}, platform"
            " {{ $labels.platform }}, source {{ $labels.source }}.",
            per_place,
        ),
        alert(
            config,
            "IngestionPersistentFailures",
            # Files that reached the retry cap and keep accumulating: retries are not helping.
            f"{config.dedup(at_cap)} > 0\nand\n"
            f"{config.dedup(f'delta({at_cap}[{persistent.growth_window}])')} > 0",
            '{{ $value | printf "%.0f" }} files at the retry cap for {{ $labels.tenant }} on'
            " {{ $labels.platform }}",
            "Files of tenant {{ $labels.tenant }} on {{ $labels.platform }} (source {{ $labels.source }})"
            " have failed retry_count_cap times or more, and their number grew over"
            f" {in_words(persistent.growth_window)}.",
            per_place,
        ),
        alert(
            config,
            "IngestionUnresolvedFailuresOld",
            f"time() - min without ({config.replicas}) "
            f"(ingestion_failed_files_oldest_timestamp_seconds{{{sel()}}}) > {number(seconds(old.max_age))}",
            f"Failures older than {in_words(old.max_age)} for {{{{ $labels.tenant }}}} on"
            " {{ $labels.platform }}",
            "The oldest unresolved failure of tenant {{ $labels.tenant }} on {{ $labels.platform }}"
            " (source {{ $labels.source }}) is {{ $value | humanizeDuration }} old.",
            per_place,
        ),
        alert(
            config,
            "IngestionAccessDeniedBurst",
            # Many new access-denied failures at once: usually a permissions change upstream.
            config.dedup(f"sum by ({keep}, source, tenant, platform) (increase({denied}[{burst.window}]))")
            + f" >= {burst.failures}",
            "Access-denied burst for {{ $labels.tenant }} on {{ $labels.platform }}",
            '{{ $value | printf "%.0f" }} new ACCESS_DENIED failures in'
            f" {in_words(burst.window)} for tenant {{{{ $labels.tenant }}}}, platform"
            " {{ $labels.platform }}, source {{ $labels.source }}: likely a permissions regression of"
            " the service account.",
            failures_url(config, "source", "tenant", "platform", error_type="ACCESS_DENIED"),
        ),
        alert(
            config,
            "IngestionSeriesCapHit",
            f"ingestion_source_series_dropped{{{sel()}}} > 0",
            '{{ $labels.source }} drops {{ $value | printf "%.0f" }} label sets at max_series_per_source',
            "Source {{ $labels.source }} produced more label sets than max_series_per_source; the"
            " excess is not exported, so counts for it are incomplete.",
            per_source,
        ),
        alert(
            config,
            "IngestionExporterAbsent",
            f"absent(up{{{sel()}}} == 1)",
            "No ingestion-failure-exporter is being scraped",
            f"Prometheus has no healthy target matching {{{sel()}}}: nothing watches ingestion"
            " failures, and every other ingestion alert is silent.",
            None,  # no exporter to link to
        ),
        alert(
            config,
            "IngestionShardMissing",
            # Distinct shard ordinals up (identical replicas of a shard count once) against the
            # shard count they were given, as kube-state-metrics' sharding advises.
            f"max by (job) (ingestion_exporter_total_shards{{{sel()}}})\n"
            "  - count by (job) (count_values by (job) "
            f'("shard", ingestion_exporter_shard_ordinal{{{sel()}}}))\n'
            "  > 0",
            '{{ $value | printf "%.0f" }} shard(s) of {{ $labels.job }} not up',
            '{{ $value | printf "%.0f" }} of the shards of job {{ $labels.job }} export nothing: the'
            " tenants assigned to them are watched by no one, and their failures page nobody.",
            None,  # the missing shard is the exporter to link to
        ),
    ]


def rule_groups(config: Config) -> list[dict[str, Any]]:
    return [
        {"name": RECORDING_GROUP, "rules": recording_rules(config)},
        {"name": ALERTING_GROUP, "rules": alerting_rules(config)},
    ]


def prometheus_rule(config: Config) -> dict[str, Any]:
    """The same groups as a Prometheus Operator PrometheusRule."""
    metadata: dict[str, Any] = {"name": config.prometheus_rule.name}
    labels = {"app.kubernetes.io/name": "ingestion-failure-exporter", **config.prometheus_rule.labels}
    metadata["labels"] = labels
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": rule_groups(config)},
    }
