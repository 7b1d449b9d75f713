"""What the chaos suite's tests share: its budget (short, or full with
``--long``), a plain HTTP client, the Sentinel migration settings."""

from __future__ import annotations

import http.client
import json as jsonlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from examples.sentinel.database import MIGRATION_FOLDER
from feature_gates.migrate import MigrationSettings

#: What `migrate` applies to Sentinel's database: its base tables, core, counters.
SENTINEL_SETTINGS = MigrationSettings(
    sets=("sentinel", "core", "counters"), folders={"sentinel": MIGRATION_FOLDER}
)


@dataclass(frozen=True)
class Budget:
    """How hard the suite pushes: short by default, full with ``--long``."""

    #: The soak of the example app: seconds, concurrent clients, users per plan.
    soak_seconds: float
    soak_clients: int
    soak_users_per_plan: int
    #: Outages during a soak: seconds of traffic before, during and after each.
    outage_seconds: float
    outages: int
    #: Rows of the database whose counters backfill is killed half-way.
    backfill_threads: int
    #: One-session checks run against each kind of pooler.
    session_checks: int
    #: Sentinel under gunicorn behind PgBouncer: seconds, clients, workers, threads
    #: of a gthread worker.
    served_seconds: float
    served_clients: int
    served_workers: int
    served_threads: int


SHORT = Budget(
    soak_seconds=5.0,
    soak_clients=12,
    soak_users_per_plan=2,
    outage_seconds=1.0,
    outages=1,
    backfill_threads=25_000,
    session_checks=5,
    served_seconds=3.0,
    served_clients=8,
    served_workers=2,
    served_threads=4,
)
LONG = Budget(
    soak_seconds=180.0,
    soak_clients=36,
    soak_users_per_plan=6,
    outage_seconds=8.0,
    outages=3,
    backfill_threads=400_000,
    session_checks=300,
    served_seconds=60.0,
    served_clients=16,
    served_workers=4,
    served_threads=8,
)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def mimetype(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip()

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class Http:
    """A client of a server on loopback: one connection per request, as browsers
    and most API clients of a threaded development server end up doing."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        split = urlsplit(base_url)
        self.host = split.hostname or "127.0.0.1"
        self.port = split.port
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if json is not None:
            body = jsonlib.dumps(json).encode()
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()


def add_user(app: Any, email: str, plan: str, token: str) -> int:
    """A user of ``plan`` whose API token is ``token``; returns the id."""
    accounts = app.extensions["sentinel"].accounts
    user = accounts.create_user(email, email.split("@")[0], plan)
    accounts.add_token(user.id, "chaos", token)
    return int(user.id)


def iter_rules(app: Any) -> Iterator[Any]:
    """The app's routes, static files left out."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            yield rule
