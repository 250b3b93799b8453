"""Simulator of Azure Data Factory's run queries and of the Microsoft identity platform's token
endpoint: the platform of the README's worked ``http_json`` example (examples/azure-data-factory.yaml).

As Microsoft's REST reference (api-version 2018-06-01) describes them:

- ``POST /{tenant}/oauth2/v2.0/token``: the client credentials grant (form fields
  ``grant_type``, ``client_id``, ``client_secret``, ``scope``); a token with ``expires_in``;
  an unknown client gets 401 ``invalid_client``.
- ``POST /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.DataFactory/factories/{f}/
  queryPipelineRuns`` and ``.../pipelineruns/{runId}/queryActivityruns``: ``api-version`` in the
  query; a JSON body with ``lastUpdatedAfter`` and ``lastUpdatedBefore`` (required),
  ``filters`` (``operand``, ``operator`` ``Equals``/``NotEquals``/``In``/``NotIn``, ``values``)
  and ``continuationToken`` (null for the first page); the answer's ``value`` and, while more
  remain, its ``continuationToken``. A missing or wrong bearer token gets 401
  ``InvalidAuthenticationToken``; a bad request 400 with ARM's ``error`` object.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from exporter.simulators.base import SimRequest, SimResponse, Simulator, json_response

API_VERSION = "2018-06-01"
FACTORY = (
    r"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.DataFactory/factories/(?P<factory>[^/]+)"
)
# Activities that contain others: they fail when an inner activity fails.
CONTAINERS = ("ForEach", "IfCondition", "Until", "Switch", "ExecutePipeline")


def iso(ts: float) -> str:
    """ISO 8601 as ARM writes it: seven fractional digits and Z."""
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def parse_iso(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass
class SimActivity:
    name: str
    activity_type: str  # Copy, ForEach, ...
    status: str  # Succeeded, Failed, ...
    error_code: str = ""
    message: str = ""
    failure_type: str = "UserError"


@dataclass
class SimPipelineRun:
    pipeline: str
    status: str  # Queued, InProgress, Succeeded, Failed, Canceling, Cancelled
    start: float
    end: float
    activities: list[SimActivity] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def as_json(self) -> dict[str, Any]:
        failed = next((a for a in self.activities if a.status == "Failed"), None)
        return {
            "runId": self.run_id,
            "runGroupId": self.run_id,
            "isLatest": True,
            "pipelineName": self.pipeline,
            "parameters": {},
            "invokedBy": {"name": "Daily", "id": "08585", "invokedByType": "ScheduleTrigger"},
            "runStart": iso(self.start),
            "runEnd": iso(self.end),
            "durationInMs": int((self.end - self.start) * 1000),
            "status": self.status,
            "message": f"Operation on target {failed.name} failed: {failed.message}" if failed else "",
            "lastUpdated": iso(self.end),
            "annotations": [],
            "runDimension": {},
        }

    def activity_json(self, activity: SimActivity, index: int) -> dict[str, Any]:
        started = self.start + index
        error: dict[str, Any] = {"errorCode": "", "message": "", "failureType": "", "target": activity.name}
        if activity.status == "Failed":
            error = {
                "errorCode": activity.error_code,
                "message": activity.message,
                "failureType": activity.failure_type,
                "target": activity.name,
                "details": "",
            }
        return {
            "pipelineName": self.pipeline,
            "pipelineRunId": self.run_id,
            "activityName": activity.name,
            "activityType": activity.activity_type,
            "activityRunId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.run_id}/{activity.name}")),
            "linkedServiceName": "",
            "status": activity.status,
            "activityRunStart": iso(started),
            "activityRunEnd": iso(min(started + 30, self.end)),
            "durationInMs": 30_000,
            "input": {},
            "output": {},
            "error": error,
        }


class AdfSimulator(Simulator):
    """One factory's pipeline runs, behind a token endpoint; ``page_size`` items a page."""

    def __init__(
        self,
        client_id: str = "11111111-2222-3333-4444-555555555555",
        client_secret: str = "demo-adf-client-secret",
        page_size: int = 100,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.client_id, self.client_secret = client_id, client_secret
        self.page_size = page_size
        self.runs: list[SimPipelineRun] = []
        self.tokens: list[str] = []
        self.token_lifetime = 3599
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token$", self._token)
        self.route("POST", FACTORY + "/queryPipelineRuns$", self._pipeline_runs)
        self.route("POST", FACTORY + r"/pipelineruns/(?P<run>[^/]+)/queryActivityruns$", self._activity_runs)

    def add_run(self, run: SimPipelineRun) -> SimPipelineRun:
        with self.lock:
            self.runs.append(run)
        return run

    def _token(self, request: SimRequest) -> SimResponse:
        form = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003"})
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return json_response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
            )
        if not form.get("scope", "").endswith("/.default"):
            return json_response(400, {"error": "invalid_scope", "error_description": "AADSTS1002012"})
        with self.lock:
            self.tokens.append(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
            token = self.tokens[-1]
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
        )

    def _refused(self, request: SimRequest) -> SimResponse | None:
        with self.lock:
            token = self.tokens[-1] if self.tokens else None
        if token is None or request.headers.get("authorization") != f"Bearer {token}":
            return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if request.arg("api-version") != API_VERSION:
            return arm_error(400, "InvalidApiVersionParameter", f"The api-version is not {API_VERSION}.")
        return None

    def _query(self, request: SimRequest) -> tuple[dict[str, Any], float, float] | SimResponse:
        """A run query's body and window, or the answer that refuses it."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(request.body)
        except ValueError:
            return arm_error(400, "InvalidRequestContent", "The request content was invalid.")
        after = parse_iso(body.get("lastUpdatedAfter") if isinstance(body, dict) else None)
        before = parse_iso(body.get("lastUpdatedBefore") if isinstance(body, dict) else None)
        if after is None or before is None:
            return arm_error(
                400, "InvalidRequestContent", "lastUpdatedAfter and lastUpdatedBefore are required."
            )
        return body, after, before

    def _pipeline_runs(self, request: SimRequest) -> SimResponse:
        query = self._query(request)
        if isinstance(query, SimResponse):
            return query
        body, after, before = query
        with self.lock:
            runs = [r.as_json() for r in self.runs if after <= r.end <= before]
        return self._page([r for r in runs if matches(r, body.get("filters"))], body.get("continuationToken"))

    def _activity_runs(self, request: SimRequest) -> SimResponse:
        query = self._query(request)
        if isinstance(query, SimResponse):
            return query
        body, after, before = query
        with self.lock:
            run = next((r for r in self.runs if r.run_id == request.match["run"]), None)
            if run is None:
                return arm_error(404, "PipelineRunNotFound", "The pipeline run was not found.")
            activities = [run.activity_json(a, i) for i, a in enumerate(run.activities)]
        chosen = [
            a
            for a in activities
            if after <= (parse_iso(a["activityRunEnd"]) or 0.0) <= before and matches(a, body.get("filters"))
        ]
        return self._page(chosen, body.get("continuationToken"))

    def _page(self, items: list[dict[str, Any]], token: Any) -> SimResponse:
        start = 0
        if token is not None:
            try:
                start = int(base64.b64decode(str(token)).decode())
            except ValueError:
                return arm_error(400, "InvalidContinuationToken", "The continuation token is invalid.")
        end = start + self.page_size
        answer: dict[str, Any] = {"value": items[start:end]}
        if end < len(items):
            answer["continuationToken"] = base64.b64encode(str(end).encode()).decode()
        return json_response(200, answer)


OPERANDS = {"Status": "status", "PipelineName": "pipelineName", "ActivityName": "activityName"}
OPERANDS |= {"ActivityType": "activityType"}


def matches(item: dict[str, Any], filters: Any) -> bool:
    """Whether an item passes every filter the query gives."""
    for condition in filters or []:
        value = item.get(OPERANDS.get(condition.get("operand"), ""))
        values = condition.get("values") or []
        operator = condition.get("operator")
        inside = value in values
        if (operator in ("Equals", "In") and not inside) or (operator in ("NotEquals", "NotIn") and inside):
            return False
    return True


def arm_error(status: int, code: str, message: str) -> SimResponse:
    return json_response(status, {"error": {"code": code, "message": message}})


def seed_example(simulator: AdfSimulator, now: float | None = None) -> None:
    """A day of a factory: a copy that keeps failing on one file, a lookup that failed once."""
    now = time.time() if now is None else now
    copy_failed = SimActivity(
        "Copy invoices",
        "Copy",
        "Failed",
        "2200",
        "ErrorCode=UserErrorFileNotFound,'Type=Microsoft.DataTransfer.Common.Shared.HybridDeliveryException,"
        "Message=The file 'landing/invoices/2026-12-05.csv' does not exist.'",
    )
    container = SimActivity(
        "For each file",
        "ForEach",
        "Failed",
        "ActivityFailed",
        "Activity failed because an inner activity failed",
    )
    for hours in (20, 8, 2):
        simulator.add_run(
            SimPipelineRun(
                "ingest-invoices",
                "Failed",
                now - hours * 3600,
                now - hours * 3600 + 300,
                [container, copy_failed],
            )
        )
    lookup = SimActivity(
        "Lookup watermark", "Lookup", "Failed", "2011", "Timeout expired while reading the watermark table"
    )
    simulator.add_run(SimPipelineRun("refresh-kb", "Failed", now - 5000, now - 4900, [lookup]))
    simulator.add_run(
        SimPipelineRun(
            "refresh-kb",
            "Succeeded",
            now - 1000,
            now - 900,
            [SimActivity("Lookup watermark", "Lookup", "Succeeded")],
        )
    )
