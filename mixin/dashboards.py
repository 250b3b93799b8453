"""The Grafana dashboards, from the mixin's configuration (``python -m mixin`` writes them).

Panels are declared once here; the JSON files are what users import. Every panel's PromQL is
also what the end-to-end test evaluates against a real Prometheus, and what the lint tests hold
to Grafana's dashboard-linter rules: every selector has ``job`` and ``instance`` matchers, and
every failure count is taken with ``max`` over the replica labels, so that identical replicas
are counted once and shards (whose series never overlap) are summed.
"""

from __future__ import annotations

import json
from typing import Any

from mixin import Config

SCHEMA_VERSION = 41
OVERVIEW_UID = "ingestion-failures-overview"
TENANT_UID = "ingestion-failures-tenant"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Label filters, with Grafana's variables. Multi-value variables expand to a regex.
SCOPE = 'job=~"$job", instance=~"$instance"'
FILES = f'{SCOPE}, source=~"$source", tenant=~"$tenant", platform=~"$platform", error_type=~"$error_type"'
PLACES = f'{SCOPE}, source=~"$source", tenant=~"$tenant", platform=~"$platform"'
SOURCES = f'{SCOPE}, source=~"$source"'
# Files at the retry cap: their retry_count label ends in "+" ("5+").
AT_CAP = 'retry_count=~".*\\\\+"'
TENANT_LINK = (
    f"/d/{TENANT_UID}/ingestion-failures-tenant?var-tenant=${{__field.labels.tenant}}&${{source:queryparam}}"
)
INFINITY = {"type": "yesoreyeram-infinity-datasource", "uid": "${failures_datasource}"}


def failures_link(title: str, **labels: str) -> dict[str, Any]:
    """A data link to the exporter's /failures page for the clicked series (or row): ``labels``
    maps each filter to the Grafana value it takes, e.g. ``tenant="${__field.labels.tenant}"``."""
    query = "&".join(f"{name}={value}" for name, value in labels.items())
    return {"title": title, "url": f"${{exporter_url}}/failures?format=html&{query}", "targetBlank": True}


def exporter_url_variable(config: Config) -> dict[str, Any]:
    """The exporter's address as people's browsers reach it: the /failures links go there."""
    url = config.exporter_url
    return {
        "type": "textbox",
        "name": "exporter_url",
        "label": "Exporter URL",
        "description": "The exporter's address as your browser reaches it, for the failed-files links.",
        "query": url,
        "current": {"text": url, "value": url},
        "options": [{"selected": True, "text": url, "value": url}],
        "hide": 0,
    }


Panel = dict[str, Any]


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping into new rows."""

    def __init__(self) -> None:
        self.x = self.y = self.row_height = 0
        self.next_id = 1

    def place(self, panel: Panel, width: int, height: int) -> Panel:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": width, "h": height}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += width
        self.row_height = max(self.row_height, height)
        return panel

    def row(self, title: str) -> Panel:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel = self.place({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.row_height = 0, self.y + 1, 0
        return panel


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    options: dict[str, Any] | None = None,
    links: list[dict[str, Any]] | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
    no_value: str | None = None,
) -> Panel:
    steps = [{"value": v, "color": c} for v, c in (thresholds or [(None, "green")])]
    defaults: dict[str, Any] = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if links:
        defaults["links"] = links
    if no_value is not None:
        defaults["noValue"] = no_value  # what the panel says instead of an empty graph
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
    }


def stat(title: str, description: str, expr: str, **kw: Any) -> Panel:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "textMode": "auto",
    }
    return panel("stat", title, description, [target(expr)], options=options, **kw)


def timeseries(title: str, description: str, targets: list[dict[str, Any]], **kw: Any) -> Panel:
    options = {
        "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, description, targets, options=options, **kw)


def bars(title: str, description: str, expr: str, legend: str, **kw: Any) -> Panel:
    options = {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "showUnfilled": True,
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
    }
    return panel("bargauge", title, description, [target(expr, legend, instant=True)], options=options, **kw)


def table(title: str, description: str, expr: str, **kw: Any) -> Panel:
    options = {"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]}
    built = panel("table", title, description, [target(expr, instant=True)], options=options, **kw)
    built["transformations"] = [
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True}},
        }
    ]
    return built


def variable(
    name: str, label: str, query: str, *, multi: bool = True, all_value: str = ".*"
) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "allValue": all_value if multi else None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
    }


def scope_variables(config: Config) -> list[dict[str, Any]]:
    """``job`` and ``instance``, as the dashboard linter asks: multi-value, with "All" as ``.+``.
    Pick one instance to see one shard or one replica."""
    jobs = f"label_values(ingestion_source_info{{{config.selector}}}, job)"
    instances = 'label_values(ingestion_source_info{job=~"$job"}, instance)'
    return [
        variable("job", "Job", jobs, all_value=".+"),
        variable("instance", "Instance", instances, all_value=".+"),
    ]


def datasource_variable() -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "refresh": 1,
        "current": {},
        "hide": 0,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[dict[str, Any]],
    panels: list[Panel],
    links: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ingestion", "ingestion-failure-exporter"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "templating": {"list": [datasource_variable(), *variables]},
        "annotations": {"list": []},
        "links": links or [],
        "panels": panels,
    }


def overview(config: Config) -> dict[str, Any]:
    once = config.dedup
    grid = Layout()
    tenant_files = failures_link("Failed files of this tenant", tenant="${__field.labels.tenant}")
    tenant_link = [{"title": "Tenant details", "url": TENANT_LINK}, tenant_files]
    panels = [
        grid.row("Now"),
        grid.place(
            stat(
                "Failed files",
                "Failure records in the latest successful polls.",
                f"sum({once(f'ingestion_failed_files{{{FILES}}}')})",
            ),
            4,
            4,
        ),
        grid.place(
            stat(
                "New in the last hour",
                "Failure records first seen in the last hour.",
                f"sum({once(f'increase(ingestion_failed_files_discovered_total{{{FILES}}}[1h])')})",
            ),
            4,
            4,
        ),
        grid.place(
            stat(
                "Resolved in the last hour",
                "Failure records that disappeared in the last hour.",
                f"sum({once(f'increase(ingestion_failed_files_resolved_total{{{PLACES}}}[1h])')})",
            ),
            4,
            4,
        ),
        grid.place(
            stat(
                "At the retry cap",
                "Files that failed retry_count_cap times or more: retries are not helping.",
                f"sum({once(f'ingestion_failed_files{{{FILES}, {AT_CAP}}}')})",
                thresholds=[(None, "green"), (1, "orange")],
            ),
            4,
            4,
        ),
        grid.place(
            stat(
                "Oldest unresolved failure",
                "Age of the oldest current failure record.",
                f"time() - min(ingestion_failed_files_oldest_timestamp_seconds{{{PLACES}}})",
                unit="s",
                thresholds=[(None, "green"), (86400, "orange")],
            ),
            4,
            4,
        ),
        grid.place(
            stat(
                "Sources up",
                "Share of sources whose latest poll succeeded completely.",
                f"sum(ingestion_source_up{{{SOURCES}}}) / count(ingestion_source_up{{{SOURCES}}})",
                unit="percentunit",
                thresholds=[(None, "red"), (0.99, "green")],
            ),
            4,
            4,
        ),
        grid.row("Failures"),
        grid.place(
            timeseries(
                "Failed files by platform",
                "Current failure records, by platform.",
                [
                    target(
                        "sum by (platform) "
                        f"({once(f'source_tenant_platform_error_type:ingestion_failed_files:sum{{{FILES}}}')})",
                        "{{platform}}",
                    )
                ],
                links=[failures_link("Failed files on this platform", platform="${__field.labels.platform}")],
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Failed files by error type",
                "Current failure records, by error type.",
                [
                    target(
                        "sum by (error_type) "
                        f"({once(f'source_tenant_platform_error_type:ingestion_failed_files:sum{{{FILES}}}')})",
                        "{{error_type}}",
                    )
                ],
                links=[failures_link("Failed files of this type", error_type="${__field.labels.error_type}")],
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Failed rows by error type",
                "Rows (records inside files or batches) that the current failures stand for, where "
                "the platform reports them: AEP's partially ingested and failed batches. Empty for "
                "sources of other kinds, which report files only.",
                [
                    target(
                        f"sum by (error_type) ({once(f'ingestion_failed_rows{{{FILES}}}')})",
                        "{{error_type}}",
                    )
                ],
                links=[failures_link("Failed files of this type", error_type="${__field.labels.error_type}")],
                no_value="No source of these reports failed rows (only AEP does)",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Failed rows and records by source",
                "For each source that reports rows: the rows its current failures stand for, beside "
                "its failure records (files, batches and error codes). Many rows behind few records "
                "is partial ingestion skipping bad rows.",
                [
                    target(
                        f"sum by (source) ({once(f'ingestion_failed_rows{{{FILES}}}')})",
                        "{{source}} rows",
                        "A",
                    ),
                    target(
                        f"sum by (source) ({once(f'ingestion_failed_files{{{FILES}}}')})"
                        f" and on (source) sum by (source) ({once(f'ingestion_failed_rows{{{FILES}}}')})",
                        "{{source}} records",
                        "B",
                    ),
                ],
                no_value="No source of these reports failed rows (only AEP does)",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "New and resolved per hour",
                "Records first seen, and records gone, over the last hour.",
                [
                    target(
                        "sum("
                        + once(
                            "source_tenant_platform_error_type:ingestion_failed_files_discovered:increase1h"
                            f"{{{FILES}}}"
                        )
                        + ")",
                        "new",
                        "A",
                    ),
                    target(
                        f"sum({once(f'source_tenant_platform:ingestion_failed_files_resolved:increase1h{{{PLACES}}}')})",
                        "resolved",
                        "B",
                    ),
                ],
            ),
            12,
            8,
        ),
        grid.place(
            bars(
                "Top tenants",
                "Tenants with the most current failures. Click for the tenant's dashboard.",
                "topk(10, sum by (tenant) "
                f"({once(f'source_tenant_platform:ingestion_failed_files:sum{{{PLACES}}}')}))",
                "{{tenant}}",
                links=tenant_link,
            ),
            6,
            8,
        ),
        grid.place(
            bars(
                "Retry count distribution",
                "Current failures by how often they were retried.",
                "sum by (retry_count) "
                f"({once(f'source_tenant_platform_retry_count:ingestion_failed_files:sum{{{PLACES}}}')})",
                "{{retry_count}}",
            ),
            6,
            8,
        ),
        grid.place(
            table(
                "Oldest unresolved failure by tenant and platform",
                "How long the oldest current failure has been there. Click a tenant for details.",
                f"time() - min without ({config.replicas}) "
                f"(ingestion_failed_files_oldest_timestamp_seconds{{{PLACES}}})",
                unit="s",
                links=[
                    tenant_link[0],
                    failures_link(
                        "Failed files of this tenant on this platform",
                        source="${__data.fields.source}",
                        tenant="${__data.fields.tenant}",
                        platform="${__data.fields.platform}",
                    ),
                ],
                thresholds=[(None, "green"), (86400, "orange")],
            ),
            24,
            8,
        ),
        grid.row("Source health"),
        grid.place(
            stat(
                "Up",
                "1 if the source's latest poll succeeded completely, on each exporter that polls it.",
                f"ingestion_source_up{{{SOURCES}}}",
                thresholds=[(None, "red"), (1, "green")],
            ),
            6,
            6,
        ),
        grid.place(
            timeseries(
                "Time since last success",
                "Seconds since each source's latest successful poll.",
                [
                    target(
                        f"time() - ingestion_source_last_success_timestamp_seconds{{{SOURCES}}}",
                        "{{source}} on {{instance}}",
                    )
                ],
                unit="s",
            ),
            6,
            6,
        ),
        grid.place(
            timeseries(
                "Poll duration p95",
                "95th percentile of poll duration over 5 minutes.",
                [
                    target(
                        f"source:ingestion_source_poll_duration_seconds:p95_5m{{{SOURCES}}}",
                        "{{source}} on {{instance}}",
                    )
                ],
                unit="s",
            ),
            6,
            6,
        ),
        grid.place(
            timeseries(
                "Poll errors by reason",
                "Failed polls in the last hour, by source and reason.",
                [
                    target(
                        "sum by (instance, source, reason) "
                        f"(increase(ingestion_source_poll_errors_total{{{SOURCES}}}[1h]))",
                        "{{source}} {{reason}} on {{instance}}",
                    )
                ],
            ),
            6,
            6,
        ),
        grid.place(
            timeseries(
                "Series dropped at the cap",
                "Label sets dropped by max_series_per_source.",
                [target(f"ingestion_source_series_dropped{{{SOURCES}}}", "{{source}} on {{instance}}")],
            ),
            12,
            6,
        ),
        grid.place(
            timeseries(
                "Records scanned per poll",
                "Records read in each source's latest poll.",
                [target(f"ingestion_source_records_scanned{{{SOURCES}}}", "{{source}} on {{instance}}")],
            ),
            12,
            6,
        ),
    ]
    variables = [
        *scope_variables(config),
        variable("source", "Source", f"label_values(ingestion_source_info{{{SCOPE}}}, source)"),
        variable(
            "tenant", "Tenant", f'label_values(ingestion_failed_files{{{SCOPE}, source=~"$source"}}, tenant)'
        ),
        variable(
            "platform",
            "Platform",
            f'label_values(ingestion_failed_files{{{SCOPE}, source=~"$source", tenant=~"$tenant"}}, '
            "platform)",
        ),
        variable("error_type", "Error type", f"label_values(ingestion_failed_files{{{PLACES}}}, error_type)"),
        exporter_url_variable(config),
    ]
    return dashboard(
        OVERVIEW_UID,
        "Ingestion failures — overview",
        "Which files ingestion pipelines failed on, for whom, why, and whether retries help.",
        variables,
        panels,
    )


def tenant(config: Config) -> dict[str, Any]:
    once = config.dedup
    grid = Layout()
    one = f'{SCOPE}, tenant="$tenant", source=~"$source"'
    panels = [
        grid.place(
            stat(
                "Failed files",
                "Current failure records of this tenant.",
                f"sum({once(f'ingestion_failed_files{{{one}}}')})",
                links=[failures_link("Failed files of this tenant", tenant="${tenant}")],
            ),
            6,
            4,
        ),
        grid.place(
            stat(
                "New in the last hour",
                "Records first seen in the last hour.",
                f"sum({once(f'increase(ingestion_failed_files_discovered_total{{{one}}}[1h])')})",
            ),
            6,
            4,
        ),
        grid.place(
            stat(
                "At the retry cap",
                "Failures retried retry_count_cap times or more.",
                f"sum({once(f'ingestion_failed_files{{{one}, {AT_CAP}}}')})",
            ),
            6,
            4,
        ),
        grid.place(
            stat(
                "Oldest unresolved failure",
                "Age of this tenant's oldest current failure.",
                f"time() - min(ingestion_failed_files_oldest_timestamp_seconds{{{one}}})",
                unit="s",
                thresholds=[(None, "green"), (86400, "orange")],
            ),
            6,
            4,
        ),
        grid.place(
            timeseries(
                "By platform",
                "Current failures, by platform.",
                [
                    target(
                        "sum by (platform) "
                        f"({once(f'source_tenant_platform:ingestion_failed_files:sum{{{one}}}')})",
                        "{{platform}}",
                    )
                ],
                links=[
                    failures_link(
                        "Failed files on this platform",
                        tenant="${tenant}",
                        platform="${__field.labels.platform}",
                    )
                ],
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "By error type",
                "Current failures, by error type.",
                [
                    target(
                        "sum by (error_type) "
                        f"({once(f'source_tenant_platform_error_type:ingestion_failed_files:sum{{{one}}}')})",
                        "{{error_type}}",
                    )
                ],
                links=[
                    failures_link(
                        "Failed files of this type",
                        tenant="${tenant}",
                        error_type="${__field.labels.error_type}",
                    )
                ],
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "By retry count",
                "Current failures, by retry count.",
                [
                    target(
                        "sum by (retry_count) "
                        f"({once(f'source_tenant_platform_retry_count:ingestion_failed_files:sum{{{one}}}')})",
                        "{{retry_count}}",
                    )
                ],
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "New and resolved per hour",
                "Records first seen and records gone, per hour.",
                [
                    target(
                        "sum("
                        + once(
                            "source_tenant_platform_error_type:ingestion_failed_files_discovered:increase1h"
                            f"{{{one}}}"
                        )
                        + ")",
                        "new",
                        "A",
                    ),
                    target(
                        f"sum({once(f'source_tenant_platform:ingestion_failed_files_resolved:increase1h{{{one}}}')})",
                        "resolved",
                        "B",
                    ),
                ],
            ),
            12,
            8,
        ),
        grid.place(
            table(
                "Current failures",
                "Failure records by platform, error type and retry count.",
                "sum by (source, platform, error_type, retry_count) "
                f"({once(f'ingestion_failed_files{{{one}}}')})",
                links=[
                    failures_link(
                        "These failed files",
                        source="${__data.fields.source}",
                        tenant="${tenant}",
                        platform="${__data.fields.platform}",
                        error_type="${__data.fields.error_type}",
                    )
                ],
            ),
            24,
            10,
        ),
        grid.place(causes_table(), 24, 8),
        grid.place(failed_files_table(), 24, 12),
    ]
    variables = [
        *scope_variables(config),
        variable("tenant", "Tenant", f"label_values(ingestion_failed_files{{{SCOPE}}}, tenant)", multi=False),
        variable(
            "source", "Source", f'label_values(ingestion_failed_files{{{SCOPE}, tenant="$tenant"}}, source)'
        ),
        exporter_url_variable(config),
        {
            "type": "datasource",
            "name": "failures_datasource",
            "label": "Failed files data source",
            "description": (
                "An Infinity data source whose URL is the exporter, as Grafana's server reaches it."
            ),
            "query": INFINITY["type"],
            "refresh": 1,
            "current": {},
            "hide": 0,
        },
    ]
    back = [
        {
            "title": "Overview",
            "type": "link",
            "url": f"/d/{OVERVIEW_UID}/ingestion-failures-overview",
            "icon": "dashboard",
            "keepTime": True,
        }
    ]
    return dashboard(
        TENANT_UID,
        "Ingestion failures — tenant",
        "One tenant's failed files by platform, error type and retry count.",
        variables,
        panels,
        back,
    )


# A /failures item's fields the files table shows: the tenant is the dashboard's.
FILE_COLUMNS = (
    ("source", "Source"),
    ("platform", "Platform"),
    ("error_type", "Error type"),
    ("retry_count", "Retries"),
    ("rows", "Rows"),
    ("name", "File"),
    ("location", "Location"),
    ("message", "Message"),
    ("failed_at", "Failed at"),
)
# A group of /failures?group_by=message: its pattern, count, newest failure and an example.
CAUSE_COLUMNS = (
    ("key", "Cause"),
    ("count", "Files"),
    ("newest_failed_at", "Newest failure"),
    ("example.error_type", "Error type"),
    ("example.name", "Example file"),
)


def infinity_table(
    title: str, description: str, params: list[tuple[str, str]], root: str, columns: Any
) -> Panel:
    """A table read from the exporter's /failures by the Infinity data source (its URL is the
    exporter; the query's URL is relative to it)."""
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": INFINITY,
        "targets": [
            {
                "refId": "A",
                "datasource": INFINITY,
                "type": "json",
                "source": "url",
                "format": "table",
                "parser": "backend",
                "url": "/failures",
                "url_options": {"method": "GET", "params": [{"key": k, "value": v} for k, v in params]},
                "root_selector": root,
                "columns": [
                    {
                        "selector": name,
                        "text": text,
                        "type": "timestamp_epoch_s"
                        if name in ("failed_at", "newest_failed_at")
                        else "number"
                        if name in ("retry_count", "rows", "count")
                        else "string",
                    }
                    for name, text in columns
                ],
            }
        ],
        "fieldConfig": {"defaults": {"unit": "none"}, "overrides": []},
        "options": {"showHeader": True},
    }


def causes_table() -> Panel:
    """The tenant's failures by cause: what to fix first, before the files."""
    return infinity_table(
        "Causes",
        "This tenant's failed files grouped by message pattern (paths, ids and numbers replaced), "
        "most files first (the exporter's /failures?group_by=message).",
        [("tenant", "${tenant}"), ("group_by", "message"), ("limit", "100")],
        "groups",
        CAUSE_COLUMNS,
    )


def failed_files_table() -> Panel:
    """The tenant's failed files by name, newest first."""
    panel = infinity_table(
        "Failed files by name",
        "Which files failed for this tenant, newest first (the exporter's /failures).",
        [("tenant", "${tenant}"), ("limit", "1000")],
        "items",
        FILE_COLUMNS,
    )
    panel["fieldConfig"]["overrides"].append(
        {
            "matcher": {"id": "byName", "options": "Location"},
            "properties": [
                {"id": "links", "value": [{"title": "Open", "url": "${__value.raw}", "targetBlank": True}]}
            ],
        }
    )
    return panel


DASHBOARDS = {"overview.json": overview, "tenant.json": tenant}


def render(config: Config) -> dict[str, str]:
    """Each dashboard's file name and JSON text."""
    return {
        name: json.dumps(build(config), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }
