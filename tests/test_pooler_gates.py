"""The gates behind a transaction pooler, with default settings: PgBouncer in
transaction mode with two server connections per database, shared by every
connection of the package's pool (tests/pooler.py)."""

from __future__ import annotations

from collections import Counter

import psycopg
from gates_sample import create_app
from gates_sample import headers

from feature_gates.testing import fire_concurrently
from feature_gates.testing import serve


def test_metered_and_tracked_gates_work_through_pgbouncer_with_exact_counts(
    pooler, feature_gates_database_url
):
    app = create_app(pooler.url(feature_gates_database_url), FEATURE_GATES_TRACKING="background")
    gates = app.extensions["feature_gates"].extension
    statuses: Counter[int] = Counter()
    exported = 0
    try:
        with serve(app) as url:
            for _ in range(3):
                for user_id in (1, 2, 3, 4):
                    # pro allows 10 messages a month: 16 at once, three times over.
                    messages = fire_concurrently(
                        url, "POST", "/messages", n=16, headers=headers(user_id, "pro")
                    )
                    statuses.update(messages.statuses)
                    pdfs = fire_concurrently(
                        url, "GET", "/pdf", n=8, headers=headers(user_id, "pro")
                    )
                    statuses.update(pdfs.statuses)
                    exported += pdfs.allowed
        with app.app_context():
            gates.flush(timeout=60)
            errors = gates.storage_stats().errors
            tracking = gates.tracking_stats()
    finally:
        gates.close(app, timeout=60)

    assert set(statuses) == {200, 201, 429}, statuses
    assert statuses[201] == 4 * 10
    assert errors == {} and tracking.last_error is None
    with psycopg.connect(feature_gates_database_url) as conn:
        rows = conn.execute(
            "SELECT feature, user_id, usage_count FROM feature_usage ORDER BY 1, 2"
        ).fetchall()
    counts = {(feature, user_id): count for feature, user_id, count in rows}
    assert {k: v for k, v in counts.items() if k[0] == "chat_messages_monthly"} == {
        ("chat_messages_monthly", user_id): 10 for user_id in (1, 2, 3, 4)
    }
    assert sum(v for k, v in counts.items() if k[0] == "can_export_pdf") == exported == 4 * 3 * 8
    dbname = psycopg.conninfo.conninfo_to_dict(feature_gates_database_url)["dbname"]
    servers = [row for row in pooler.show("SERVERS") if row["database"] == dbname]
    assert len(servers) <= 2, "the pooler shared its two server connections"
