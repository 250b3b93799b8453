"""Simulator of Adobe Experience Platform: IMS tokens, Catalog batches (failed ones, and finished
ones with failed rows, as partial ingestion leaves them), Data Access failed files, and a Data
Access API that no longer serves some batches (it is deprecated)."""

from __future__ import annotations

import json
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from exporter.simulators.base import SimRequest, SimResponse, Simulator, json_response

CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"


@dataclass
class SimBatch:
    batch_id: str
    created_ms: int
    status: str = "failed"
    errors: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # failed file name -> content
    failed_rows: int | None = None  # ``failedRecordCount``; by default one a failed file
    # Where the count is: under ``metrics`` (error diagnostics), or at the top level.
    count_at_top: bool = False
    # What the Data Access API answers for this batch instead of its files (403, 404, 410, 501).
    export_status: int | None = None
    download_status: int | None = None  # the same for the downloads of its files only

    def as_json(self, properties: list[str] | None, sandbox_id: str) -> dict[str, Any]:
        """A Catalog batch with the fields real responses carry, cut to ``properties`` if given."""
        failed_rows = len(self.files) if self.failed_rows is None else self.failed_rows
        metrics = {
            "inputByteSize": sum(len(c) for c in self.files.values()),
            "inputFileCount": max(len(self.files), 1),
            "inputRecordCount": 100 + failed_rows,
            "outputRecordCount": 100,
        }
        if not self.count_at_top:
            metrics["failedRecordCount"] = failed_rows
        full = {
            "id": self.batch_id,
            "status": self.status,
            "created": self.created_ms,
            "updated": self.created_ms + 60000,
            "started": self.created_ms + 1000,
            "completed": self.created_ms + 120000,
            "relatedObjects": [{"type": "dataSet", "id": "5deac2648a19d218a888d2b1"}],
            "inputFormat": {"format": "json"},
            "errors": self.errors,
            "metrics": metrics,
            "tags": {"acp_enableErrorDiagnostics": [True]},
            "imsOrg": "ABCDEF123@AdobeOrg",
            "sandboxId": sandbox_id,
            "createdClient": "acp_ui_platform",
            "createdUser": "ingest@AdobeID",
            "version": "1.0.5",
        }
        if self.count_at_top:
            full["failedRecordCount"] = failed_rows
        return {k: v for k, v in full.items() if properties is None or k in properties}


def validation_file(message: str, *, lines: int = 1, json_lines: bool = False) -> bytes:
    """A failed file as Data Access serves it: one JSON document, or JSON lines."""
    error = {
        "causingExceptions": [],
        "keyword": "format",
        "message": message,
        "pointerToViolation": "#/timestamp",
        "schemaLocation": "#/properties/timestamp",
    }
    if json_lines:
        rows = [{"_corrupt": i} for i in range(lines - 1)] + [{"_validationErrors": [error]}]
        return "\n".join(json.dumps(r) for r in rows).encode()
    return json.dumps({"_validationErrors": [error]}).encode()


class AepSimulator(Simulator):
    """The four required headers, IMS client credentials with expiry, ``start``/``limit`` paging."""

    def __init__(
        self,
        *,
        api_key: str = "demo-client-id",
        client_secret: str = "demo-client-secret",
        org_id: str = "ABCDEF123@AdobeOrg",
        sandbox: str = "prod",
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.api_key, self.client_secret, self.org_id, self.sandbox = api_key, client_secret, org_id, sandbox
        self.sandbox_id = "8f3a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718"
        self.token_lifetime = 86399
        self.tokens: dict[str, float] = {}  # token -> expiry
        self.tokens_issued = 0
        self.batches: dict[str, SimBatch] = {}
        self.route("POST", "/ims/token/v3", self._token)
        self.route("GET", f"{CATALOG}/batches", self._batches)
        self.route("GET", rf"{EXPORT}/batches/(?P<id>[^/]+)/failed", self._failed)

    def source_config(self, name: str, **extra: Any) -> dict[str, Any]:
        """An ``aep`` source using OAuth server-to-server against this simulator's token endpoint."""
        return {
            "name": name,
            "kind": "aep",
            "base_url": self.url,
            "org_id": self.org_id,
            "sandbox": self.sandbox,
            "client_id": self.api_key,
            "client_secret": self.client_secret,
            "ims_url": f"{self.url}/ims/token/v3",
            **extra,
        }

    def add_static_token(self, token: str) -> None:
        with self.lock:
            self.tokens[token] = float("inf")

    def add_batch(self, batch: SimBatch) -> SimBatch:
        with self.lock:
            self.batches[batch.batch_id] = batch
        return batch

    def downloads(self, batch_id: str, name: str) -> int:
        return sum(1 for r in self.calls(f"/batches/{batch_id}/failed$") if r.arg("path") == name)

    def _token(self, request: SimRequest) -> SimResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.api_key or form.get("client_secret") != self.client_secret:
            # As IMS answers: 400 with an OAuth error code, not 401.
            return json_response(
                400, {"error": "invalid_client", "error_description": "invalid client_id parameter"}
            )
        token = f"eyJ{secrets.token_urlsafe(24)}"
        with self.lock:
            self.tokens[token] = time.time() + self.token_lifetime
            self.tokens_issued += 1
        return json_response(
            200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime}
        )

    def _refused(self, request: SimRequest) -> SimResponse | None:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return json_response(403, {"error_code": "403010", "message": "Oauth token is missing."})
        with self.lock:
            expiry = self.tokens.get(authorization.removeprefix("Bearer "))
        if expiry is None or expiry < time.time():
            return json_response(401, {"error_code": "401013", "message": "Oauth token is not valid"})
        if "x-api-key" not in request.headers:
            return json_response(403, {"error_code": "403000", "message": "Api Key is required"})
        if request.headers["x-api-key"] != self.api_key:
            return json_response(403, {"error_code": "403003", "message": "Api Key is invalid"})
        if request.headers.get("x-gw-ims-org-id") != self.org_id:
            return json_response(400, {"error_code": "400003", "message": "Missing header"})
        if request.headers.get("x-sandbox-name") != self.sandbox:
            return json_response(403, {"error_code": "403025", "message": "Profile is not valid"})
        return None

    def _batches(self, request: SimRequest) -> SimResponse:
        if refused := self._refused(request):
            return refused
        limit = int(request.arg("limit") or 20)
        if not 1 <= limit <= 100:
            return json_response(
                400,
                {"type": "http://ns.adobe.com/aep/errors/CAT-1003-400", "title": "limit must be 1 to 100"},
            )
        start = int(request.arg("start") or 0)
        statuses = set((request.arg("status") or "").split(",")) - {""}
        after = int(request.arg("createdAfter") or 0)
        properties = request.arg("properties")
        wanted = properties.split(",") if properties else None
        with self.lock:
            found = sorted(
                (
                    b
                    for b in self.batches.values()
                    if (not statuses or b.status in statuses) and b.created_ms > after
                ),
                key=lambda b: b.created_ms,
                reverse=True,
            )
            page = found[start : start + limit]
            return json_response(200, {b.batch_id: b.as_json(wanted, self.sandbox_id) for b in page})

    def _failed(self, request: SimRequest) -> SimResponse:
        if refused := self._refused(request):
            return refused
        with self.lock:
            batch = self.batches.get(request.match["id"])
        if batch is None:
            return json_response(
                404, {"type": "http://ns.adobe.com/aep/errors/EXPORT-1404", "title": "Batch not found"}
            )
        if batch.export_status is not None:
            return json_response(
                batch.export_status,
                {
                    "type": f"http://ns.adobe.com/aep/errors/EXPORT-{batch.export_status}",
                    "title": "The Data Access API does not serve this batch",
                },
            )
        path = request.arg("path")
        if path is not None and batch.download_status is not None:
            return json_response(batch.download_status, {"title": "The file cannot be downloaded"})
        if path is not None:
            content = batch.files.get(path)
            if content is None:
                return json_response(404, {"title": "File not found"})
            return SimResponse(200, content, {"Content-Type": "application/octet-stream"})
        listing = [("_SUCCESS", b""), *batch.files.items()]
        limit = min(int(request.arg("limit") or 100), 100)
        start = int(request.arg("start") or 0)
        page = listing[start : start + limit]
        base = f"{self.url}{EXPORT}/batches/{batch.batch_id}/failed"
        body: dict[str, Any] = {
            "data": [
                {"name": n, "length": str(len(c)), "_links": {"self": {"href": f"{base}?path={n}"}}}
                for n, c in page
            ],
            "_page": {"limit": limit, "count": len(page)},
        }
        if start + limit < len(listing):
            body["_links"] = {"next": {"href": f"{base}?start={start + limit}&limit={limit}"}}
        return json_response(200, body)

    def evolve(self, rng: random.Random) -> None:
        """Another batch fails now and then, or skips some of its rows."""
        if rng.random() < 0.4:
            add = add_partial_batch if rng.random() < 0.3 else add_random_batch
            add(self, rng, time.time())


MESSAGES = (
    "[2018-00-23T22:07:01Z] is not a valid date-time. Expected [yyyy-MM-dd'T'HH:mm:ssZ]",
    "Payload body is missing xdmEntity",
    "Message has unknown xdm format",
    "required field 'identityMap' is missing",
    "Unable to parse the file: malformed JSON at line 3",
)


# Errors of partially ingested batches, as error diagnostics list them (code, description).
PARTIAL_ERRORS = (
    ("INGEST-1555-400", "[2018-00-23T22:07:01Z] is not a valid date-time for field 'timestamp'"),
    ("INGEST-1212-400", "Required field 'identityMap' is missing"),
    ("INGEST-1401-400", "Unable to parse the row: malformed CSV (unterminated quote)"),
    ("INGEST-1571-400", "Encoding of the row is not supported (invalid UTF-8 sequence)"),
)


def batch_id_from(rng: random.Random) -> str:
    return f"01E{rng.randrange(36**20):020X}"[:26]


def add_partial_batch(simulator: AepSimulator, rng: random.Random, now: float) -> None:
    """A batch that ended ``success`` with rows skipped: one to three errors, a count on most."""
    errors = []
    for code, description in rng.sample(PARTIAL_ERRORS, rng.randrange(1, 4)):
        error: dict[str, Any] = {"code": code, "description": description}
        if rng.random() < 0.8:
            error["recordCount"] = rng.randrange(1, 400)
        errors.append(error)
    rows = sum(e.get("recordCount", 1) for e in errors)
    simulator.add_batch(SimBatch(batch_id_from(rng), int(now * 1000), "success", errors, failed_rows=rows))


def add_random_batch(simulator: AepSimulator, rng: random.Random, now: float) -> None:
    batch_id = batch_id_from(rng)
    if rng.random() < 0.2:
        simulator.add_batch(
            SimBatch(
                batch_id,
                int(now * 1000),
                "failure",
                [
                    {
                        "code": "INGEST-1212-400",
                        "description": "Encoding of the file is not supported (UTF-16)",
                    }
                ],
            )
        )
        return
    files = {
        f"part-{i:05d}-{batch_id.lower()}-c000.json": validation_file(
            rng.choice(MESSAGES), json_lines=rng.random() < 0.5
        )
        for i in range(rng.randrange(1, 4))
    }
    simulator.add_batch(
        SimBatch(
            batch_id,
            int(now * 1000),
            "failed",
            [{"code": "INGEST-1555-400", "description": "Schema validation failed"}],
            files,
        )
    )


def seed_demo(simulator: AepSimulator, rng: random.Random) -> None:
    now = time.time()
    for age in (20 * 3600, 9 * 3600, 4 * 3600, 1800):
        add_random_batch(simulator, rng, now - age)
    # Partial ingestion is how most batches run today: a new user sees failed rows at once.
    for age in (14 * 3600, 6 * 3600, 2 * 3600):
        add_partial_batch(simulator, rng, now - age)
