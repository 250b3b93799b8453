"""The dashboards against the rules of Grafana's dashboard-linter, written as tests (the linter
itself is a Go program, not installable here), plus the one rule that sharded and replicated
exporters need: failure counts are taken once over replicas.

PromQL is parsed by a real parser (PyPI promql-parser), after Grafana's variables are expanded as
the linter expands them: ``$__rate_interval`` becomes a duration no one writes by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser as promql
import pytest

from mixin import load
from tests.conftest import ROOT

DASHBOARDS = {
    path.name: json.loads(path.read_text()) for path in sorted((ROOT / "dashboards").glob("*.json"))
}
PROMETHEUS = {"type": "prometheus", "uid": "${datasource}"}
RATE_INTERVAL = "11277964s"  # what $__rate_interval expands to, for the parser
REPLICA_LABELS = set(load().replica_labels)
# The units Grafana knows that these dashboards use (the linter has the whole list).
VALID_UNITS = {"short", "none", "s", "percentunit", "bytes", "ops", "reqps", "dtdurations"}
UNIT_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge", "bargauge"}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def prometheus_targets(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(board):
        if panel["datasource"] == PROMETHEUS:
            for target in panel["targets"]:
                yield panel["title"], target["expr"]


def parse(expr: str) -> Any:
    # Variables outside strings are Grafana's intervals; inside strings they stay as text.
    return promql.parse(expr.replace("$__rate_interval", RATE_INTERVAL))


def walk(node: Any, parents: tuple[Any, ...] = ()) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Every node of a PromQL tree, with its ancestors, outermost first."""
    yield node, parents
    inner = (*parents, node)
    if isinstance(node, promql.BinaryExpr):
        children = [node.lhs, node.rhs]
    elif isinstance(node, promql.AggregateExpr):
        children = [c for c in (node.param, node.expr) if c is not None]
    elif isinstance(node, promql.Call):
        children = list(node.args)
    elif isinstance(node, promql.MatrixSelector):
        children = [node.vector_selector]
    elif isinstance(node, promql.ParenExpr | promql.UnaryExpr | promql.SubqueryExpr):
        children = [node.expr]
    else:
        children = []
    for child in children:
        yield from walk(child, inner)


def selectors(node: Any) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    for each, parents in walk(node):
        if isinstance(each, promql.VectorSelector):
            yield each, parents


# The linter's target rules, each returning its complaints about one expression.


def rate_interval_problems(expr: str) -> list[str]:
    """target-rate-interval-rule: a range under rate() or irate() is $__rate_interval."""
    problems = []
    for node, parents in walk(parse(expr)):
        if isinstance(node, promql.MatrixSelector) and parents:
            call = parents[-1]
            is_rate = isinstance(call, promql.Call) and call.func.name in ("rate", "irate")
            if is_rate and node.range.total_seconds() != float(RATE_INTERVAL[:-1]):
                problems.append(f"{call.func.name} over {node.range} instead of $__rate_interval")
    return problems


def counter_problems(expr: str) -> list[str]:
    """target-counter-agg-rule: a counter (…_total) only inside rate, irate or increase."""
    problems = []
    for selector, parents in selectors(parse(expr)):
        if not (selector.name or "").endswith("_total"):
            continue
        ranged = len(parents) >= 2 and isinstance(parents[-1], promql.MatrixSelector)
        call = parents[-2] if ranged else None
        if not (isinstance(call, promql.Call) and call.func.name in ("rate", "irate", "increase")):
            problems.append(f"counter {selector.name} not under rate, irate or increase")
    return problems


def matcher_problems(expr: str, label: str) -> list[str]:
    """target-job-rule, target-instance-rule: every selector has ``label=~"$label"``."""
    problems = []
    for selector, _ in selectors(parse(expr)):
        matchers = {(m.name, str(m.op), m.value) for m in selector.matchers.matchers}
        if not any(name == label and value == f"${label}" and "Re" in op for name, op, value in matchers):
            problems.append(f'{selector.name} has no {label}=~"${label}"')
    return problems


def replica_problems(expr: str) -> list[str]:
    """Failure counts are taken once over identical replicas: the first aggregation over a
    selector of failed files is ``max without (<replica labels>)`` (or ``min``, for the oldest
    timestamp), so that nothing adds replicas up first."""
    problems = []
    for selector, parents in selectors(parse(expr)):
        name = selector.name or ""
        if "ingestion_failed_files" not in name:
            continue
        for ancestor in reversed(parents):
            if isinstance(ancestor, promql.AggregateExpr):
                # max and min do not change when a series is there twice; over all series, or
                # without the replica labels.
                modifier = ancestor.modifier
                once = str(ancestor.op) in ("max", "min") and (
                    modifier is None
                    or ("Without" in str(modifier.type) and set(modifier.labels) >= REPLICA_LABELS)
                )
                if not once:
                    problems.append(f"{name} is aggregated by {ancestor.op} before replicas are deduplicated")
                break
        else:
            problems.append(f"{name} is not taken once over replicas")
    return problems


TARGETS = [
    pytest.param(expr, id=f"{name}:{title}")
    for name, board in DASHBOARDS.items()
    for title, expr in prometheus_targets(board)
]


@pytest.mark.parametrize("expr", TARGETS)
def test_target_promql_parses(expr: str) -> None:
    parse(expr)


@pytest.mark.parametrize("expr", TARGETS)
def test_target_rates_use_the_rate_interval(expr: str) -> None:
    assert rate_interval_problems(expr) == []


@pytest.mark.parametrize("expr", TARGETS)
def test_target_counters_are_only_under_rate_or_increase(expr: str) -> None:
    assert counter_problems(expr) == []


@pytest.mark.parametrize("expr", TARGETS)
def test_target_selectors_have_job_and_instance_matchers(expr: str) -> None:
    assert matcher_problems(expr, "job") == [] and matcher_problems(expr, "instance") == []


@pytest.mark.parametrize("expr", TARGETS)
def test_target_failure_counts_are_taken_once_over_replicas(expr: str) -> None:
    assert replica_problems(expr) == []


@pytest.mark.parametrize(
    ("expr", "rule", "complaint"),
    [
        (
            'sum(rate(ingestion_source_poll_errors_total{job=~"$job"}[5m]))',
            rate_interval_problems,
            "rate over",
        ),
        ("sum(ingestion_failed_files_discovered_total)", counter_problems, "not under rate"),
        ("max_over_time(ingestion_failed_files_discovered_total[1h])", counter_problems, "not under rate"),
        ('ingestion_source_up{job=~"$job"}', lambda e: matcher_problems(e, "instance"), "no instance"),
        ('sum(ingestion_failed_files{job=~"$job"})', replica_problems, "aggregated by sum"),
        ("ingestion_failed_files", replica_problems, "not taken once"),
        ("sum(max without (pod) (ingestion_failed_files))", replica_problems, "aggregated by max"),
    ],
)
def test_each_rule_catches_what_it_is_for(expr: str, rule: Any, complaint: str) -> None:
    [problem] = rule(expr)
    assert complaint in problem


def test_a_query_written_as_the_rules_ask_passes_them_all() -> None:
    good = (
        "sum by (tenant) (max without (instance, pod) (rate(ingestion_failed_files_discovered_total"
        '{job=~"$job", instance=~"$instance"}[$__rate_interval])))'
    )
    assert rate_interval_problems(good) == counter_problems(good) == replica_problems(good) == []
    assert matcher_problems(good, "job") == matcher_problems(good, "instance") == []


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


@pytest.mark.parametrize("name", DASHBOARDS)
def test_template_datasource(name: str) -> None:
    datasource = variables(DASHBOARDS[name])["datasource"]
    assert (datasource["type"], datasource["query"], datasource["label"]) == (
        "datasource",
        "prometheus",
        "Data source",
    )


@pytest.mark.parametrize("name", DASHBOARDS)
@pytest.mark.parametrize("label", ["job", "instance"])
def test_template_job_and_instance(name: str, label: str) -> None:
    variable = variables(DASHBOARDS[name])[label]
    assert variable["type"] == "query" and variable["datasource"] == PROMETHEUS
    assert variable["label"] == label.title()
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".+"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_template_queries_are_promql_and_reload_with_the_time_range(name: str) -> None:
    for variable in variables(DASHBOARDS[name]).values():
        if variable["type"] != "query":
            continue
        assert variable["refresh"] == 2, variable["name"]  # on time range change
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"])
        assert match, variable["name"]
        parse(match.group(1))
        assert matcher_problems(match.group(1), "job") == [] or variable["name"] == "job"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_have_a_data_source_title_description_unit_and_targets(name: str) -> None:
    infinity = {"type": "yesoreyeram-infinity-datasource", "uid": "${failures_datasource}"}
    for panel in panels(DASHBOARDS[name]):
        title = panel["title"]
        # The exceptions: the causes and failed-files tables read the exporter itself, through Infinity.
        assert panel["datasource"] == PROMETHEUS or (
            panel["datasource"] == infinity and title in ("Causes", "Failed files by name")
        )
        assert title and panel["description"], title
        assert panel["targets"], title
        if panel["type"] in UNIT_PANELS:
            assert panel["fieldConfig"]["defaults"].get("unit") in VALID_UNITS, title
