"""`feature-gates alerts`: recent alerts with their delivery state and the counts
by state; `alerts replay --id / --since` sends them again under the same ids;
`archive` moves delivered and dead alerts out."""

from __future__ import annotations

import json
from datetime import date

import psycopg
import pytest
from click.testing import CliRunner

from feature_gates.cli import cli

CONSUME = (
    "SELECT feature_usage_consume(%s, 'reports', 'user', 'month', %s, 0, NULL, %s, 10, "
    "NULL, NULL, NULL, '{0.8,1.0}', 'pro')"
)


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def url(feature_gates_database_url):
    with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
        conn.execute(CONSUME, (1, date.today().replace(day=1), 8))  # 80%
        conn.execute(CONSUME, (1, date.today().replace(day=1), 2))  # 100%
        conn.execute(CONSUME, (2, date(2001, 1, 1), 8))  # 80%, long ago
        conn.execute("UPDATE feature_usage_alerts SET occurred_at = '2001-01-20' WHERE user_id = 2")
        conn.execute(
            "UPDATE feature_usage_alerts SET state = 'dead', attempts = 18 WHERE used = 10"
        )
        conn.execute("UPDATE feature_usage_alerts SET state = 'sent', attempts = 2 WHERE used = 8")
    return feature_gates_database_url


def states(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT user_id, threshold::text, state, attempts FROM feature_usage_alerts ORDER BY id"
        ).fetchall()


def test_alerts_lists_the_most_recent_first_with_their_state_and_counts(run, url):
    result = run("--database-url", url, "alerts")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "alerts: 0 pending, 2 sent, 3 retried, 1 dead"
    assert lines[1].split()[:4] == ["id", "occurred", "(UTC)", "subject"]
    first = lines[2].split()
    assert first[-4:] == ["100%", "10/10", "dead", "18"]
    assert lines[-1].split()[-4:] == ["80%", "8/10", "sent", "2"]
    data = json.loads(run("--database-url", url, "alerts", "--json", "--limit", "1").output)
    assert data["counts"] == {"pending": 0, "sent": 2, "retried": 3, "dead": 1}
    assert [(a["threshold"], a["state"]) for a in data["alerts"]] == [("1.0", "dead")]
    older = run("--database-url", url, "alerts", "--since", "2001-01-01", "--json")
    assert len(json.loads(older.output)["alerts"]) == 3


def test_replay_sends_alerts_again_by_id_or_since_a_time(run, url):
    data = json.loads(run("--database-url", url, "alerts", "--json").output)
    dead = next(a["event_id"] for a in data["alerts"] if a["state"] == "dead")
    result = run("--database-url", url, "alerts", "replay", "--id", dead)
    assert result.output == "1 alerts will be sent again\n"
    assert ("1.0", "pending", 0) in [row[1:] for row in states(url)]
    result = run("--database-url", url, "alerts", "replay", "--since", "2020-01-01")
    assert result.output == "2 alerts will be sent again\n"
    assert [row[2] for row in states(url)] == ["pending", "pending", "sent"]
    assert run("--database-url", url, "alerts", "replay").exit_code == 2
    assert run("--database-url", url, "alerts", "replay", "--id", "nope").exit_code == 2


def test_archive_moves_delivered_and_dead_alerts_out_and_keeps_pending_ones(run, url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE feature_usage_alerts SET occurred_at = '2001-01-20'")
        conn.execute("UPDATE feature_usage_alerts SET state = 'pending' WHERE threshold = 1")
    result = run("--database-url", url, "archive", "--keep-months", "3")
    assert "archived 2 delivered or dead alerts from before" in result.output
    assert [row[1:3] for row in states(url)] == [("1.0", "pending")]
    with psycopg.connect(url) as conn:
        (archived,) = conn.execute("SELECT count(*) FROM feature_usage_alerts_archive").fetchone()
    assert archived == 2
