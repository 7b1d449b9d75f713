"""Every SQL statement the migration runner sends, in one place.

The SQL of the migrations themselves lives in the .sql files of each set.
"""

from __future__ import annotations

import struct

from psycopg import sql

# The advisory lock is taken with two int4 keys: a keyspace of its own that cannot
# collide with the single bigint keys other migration tools use.
LOCK_CLASS_ID: int = struct.unpack(">i", b"fgat")[0]
LOCK_OBJECT_ID: int = 1

#: Taken inside a transaction that first checked the session token, so the
#: lock lands only on the runner's own session; the pid says where it is held.
TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s), pg_backend_pid()"
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
#: The session holding the migration lock in this database (advisory locks are
#: per database). Another role's session may hide its details (NULLs).
LOCK_HOLDER = """
SELECT a.pid, a.usename, a.application_name, host(a.client_addr), a.client_port,
       a.backend_start, a.state, extract(epoch FROM now() - a.state_change)::integer,
       left(a.query, 120)
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::int = %s AND l.objid::int = %s AND l.objsubid = 2
"""

#: The token that marks the runner's session: a setting of the session, which
#: only that session sees (see lock.prove_one_session).
SET_SESSION_TOKEN = "SELECT set_config('feature_gates.session', %s, false), pg_backend_pid()"
READ_SESSION_TOKEN = "SELECT current_setting('feature_gates.session', true)"

#: The runner's settings. Sent first in each of its transactions, local to it
#: (``local`` true), so that no pooler can put them on one server connection
#: and the statements on another; the last column is then the session token,
#: if any. Once the session is proven to be one, also for the whole session
#: (``local`` false), for the CONCURRENTLY statements that run outside any
#: transaction, with keepalives (where the server has them) that end the
#: session, and free the lock, within about a minute of its runner's host
#: vanishing, even in the middle of a statement. The schema first on the
#: search path; ``public`` next (where an application's own tables usually
#: are) when the feature-gates schema is another one; ``pg_temp`` last so that
#: a temporary table can never shadow a real one.
SET_SETTINGS = """
SELECT set_config('search_path',
                  concat_ws(', ', quote_ident(%(schema)s),
                            CASE WHEN %(schema)s <> 'public' THEN 'public' END, 'pg_temp'),
                  %(local)s),
       set_config('feature_gates.user_id_type', %(user_id_type)s, %(local)s),
       set_config('feature_gates.batch_size', %(batch_size)s, %(local)s),
       set_config('lock_timeout', %(lock_timeout)s, %(local)s),
       set_config('statement_timeout', %(statement_timeout)s, %(local)s),
       (SELECT count(set_config(s.name, v.value, false))
        FROM (VALUES ('tcp_keepalives_idle', '30'), ('tcp_keepalives_interval', '10'),
                     ('tcp_keepalives_count', '3'),
                     ('client_connection_check_interval', '10s')) AS v (name, value)
        JOIN pg_settings s ON s.name = v.name
        WHERE NOT %(local)s),
       current_setting('feature_gates.session', true)
"""
SET_SESSION_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, false)"
SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
CREATE_SCHEMA = sql.SQL("CREATE SCHEMA IF NOT EXISTS {schema}")

#: The base type of feature_usage_user_id in the target schema, or NULL before
#: the first install.
RECORDED_USER_ID_TYPE = """
SELECT format_type(t.typbasetype, NULL)
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typname = 'feature_usage_user_id' AND n.nspname = %s
"""

#: The user_id column of an existing feature_usage table, or nothing.
EXISTING_USER_ID_COLUMN = """
SELECT format_type(a.atttypid, NULL)
FROM pg_attribute a
WHERE a.attrelid = to_regclass(format('%%I.feature_usage', %s::text))
  AND a.attname = 'user_id' AND NOT a.attisdropped
"""

#: The longest-open transaction of the database other than ours: the usual
#: reason a lock cannot be had.
OLDEST_TRANSACTION = """
SELECT pid, usename, coalesce(nullif(application_name, ''), 'no application name'), state,
       extract(epoch FROM now() - xact_start)::integer, left(query, 120)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
ORDER BY xact_start
LIMIT 1
"""

CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS feature_gates_schema_history (
    set_name     text        NOT NULL,
    version      text        NOT NULL,
    name         text        NOT NULL,
    checksum     text        NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    execution_ms integer     NOT NULL,
    installed_by text        NOT NULL DEFAULT current_user,
    PRIMARY KEY (set_name, version)
)
"""

HISTORY_EXISTS = "SELECT to_regclass('feature_gates_schema_history') IS NOT NULL"

SELECT_HISTORY = """
SELECT set_name, version, name, checksum, applied_at, execution_ms, installed_by
FROM feature_gates_schema_history
ORDER BY applied_at, set_name, version
"""

INSERT_HISTORY = """
INSERT INTO feature_gates_schema_history (set_name, version, name, checksum, execution_ms)
VALUES (%s, %s, %s, %s, %s)
"""

DELETE_HISTORY = "DELETE FROM feature_gates_schema_history WHERE set_name = %s AND version = %s"

#: An index of this name left INVALID by a failed concurrent build, in a
#: schema of the search_path (an index lives in its table's schema, which for
#: an application's table may not be the feature-gates schema).
INVALID_INDEX = """
SELECT n.nspname, c.relname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = %s AND n.nspname = ANY (current_schemas(false)) AND NOT i.indisvalid
"""

DROP_INDEX_CONCURRENTLY = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {schema}.{index}")

#: Every INVALID index on a table of the schemas on the search_path. (Sent
#: without parameters: its % signs are not placeholders.)
INVALID_INDEXES = """
SELECT format('%I.%I', n.nspname, c.relname), format('%I', t.relname)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND n.nspname = ANY (current_schemas(false))
ORDER BY 1
"""

# -- counters (the registry and functions of core/0009) --------------------------

REGISTRY_EXISTS = "SELECT to_regclass('feature_gates_counter_registry') IS NOT NULL"
#: Every registered counter, the table whose rows it counts for, and whether
#: its tables and column are there to be read.
REGISTERED_COUNTERS = """
SELECT r.counter, feature_gates_counter_relation(r.table_schema, r.table_name),
       EXISTS (SELECT 1 FROM pg_attribute a
               WHERE a.attrelid = to_regclass(feature_gates_counter_relation(r.table_schema,
                                                                             r.table_name))
                 AND a.attname = r.column_name AND NOT a.attisdropped)
       AND (r.child_table IS NULL
            OR to_regclass(feature_gates_counter_relation(r.child_schema, r.child_table))
               IS NOT NULL)
FROM feature_gates_counter_registry r
ORDER BY r.counter
"""
COUNTER_PROBLEMS = "SELECT problem, detail FROM feature_gates_counter_problems() ORDER BY 1, 2"
#: One batch of a counter: audited, or with the last argument true, repaired.
COUNTER_BATCH = """
SELECT scanned, last_key, differing, examples FROM feature_gates_counter_batch(%s, %s, %s)
"""

#: The counters of the bundled set as counters/0001 made them and counters/0005
#: has not registered yet (its migrations stopped in between): repaired with
#: 0001's own functions.
FORMER_PRESENT = """
SELECT to_regproc('feature_gates_counters') IS NOT NULL
       AND to_regproc('feature_gates_backfill_counter') IS NOT NULL
"""
FORMER_ALL = "SELECT counter FROM feature_gates_counters()"
FORMER_COUNTERS = """
SELECT w.counter
FROM feature_gates_counters() w
WHERE NOT EXISTS (SELECT 1 FROM feature_gates_counter_registry r WHERE r.counter = w.counter)
"""
FORMER_DRIFT = """
SELECT c.counter, count(a.row_id)
FROM feature_gates_counters() c
LEFT JOIN feature_gates_counter_audit() a ON a.counter = c.counter
GROUP BY c.counter
"""
FORMER_RESET = "SELECT feature_gates_backfill_reset(%s)"
FORMER_STEP = "SELECT scanned, changed FROM feature_gates_backfill_counter(%s)"

# -- `counter add`: what the generator reads of the application's tables ---------

#: The parts of a possibly qualified, possibly quoted name, as PostgreSQL reads them.
NAME_PARTS = "SELECT parse_ident(%s)"
#: The relation a name (its parts) resolves to on the runner's search path.
RELATION = """
SELECT c.oid::bigint, n.nspname, c.relname, c.relkind
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(array_to_string(
    ARRAY(SELECT quote_ident(p) FROM unnest(%s::text[]) WITH ORDINALITY AS t (p, i) ORDER BY i),
    '.'))
"""
#: Each column of a relation: its type, and whether it allows NULL.
COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
#: The columns of a relation's primary key, in order (none: no primary key).
PRIMARY_KEY = """
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, n)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.n
"""
#: The parent columns that foreign keys of (child, column) alone reference in
#: the parent.
REFERENCED_COLUMNS = """
SELECT (SELECT array_agg(a.attname::text ORDER BY k.n)
        FROM unnest(c.confkey) WITH ORDINALITY AS k (attnum, n)
        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum)
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attname = %(column)s
WHERE c.contype = 'f' AND c.conrelid = %(child)s AND c.confrelid = %(parent)s
  AND c.conkey = ARRAY[a.attnum]
"""
#: Whether an index of the relation leads with the column.
LEADING_INDEX = """
SELECT EXISTS (SELECT 1 FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attname = %(column)s
               WHERE i.indrelid = %(table)s AND i.indkey[0] = a.attnum)
"""
#: The keywords a name must be quoted not to be (quote_ident() quotes them all
#: but the unreserved ones).
KEYWORDS = "SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'"
#: A predicate on the child's rows, planned (not run) the way the triggers and
#: the backfill use it: its columns must be the child's.
PLAN_PREDICATE = sql.SQL("EXPLAIN SELECT 1 FROM {child} AS {alias} WHERE ({predicate})")
#: The same predicate as an index predicate on an empty copy of the child (in
#: a transaction rolled back): PostgreSQL accepts only what depends on the row
#: alone there (no subquery, no now(), no other table).
COPY_CHILD = sql.SQL("CREATE TEMPORARY TABLE {alias} (LIKE {child}) ON COMMIT DROP")
INDEX_PREDICATE = sql.SQL("CREATE INDEX ON pg_temp.{alias} ((1)) WHERE ({predicate})")
#: How many of the first rows hold an array at the JSON path (the rest do not
#: count; none of them at all suggests a misspelt key).
JSON_SAMPLE = sql.SQL(
    "SELECT count(*), count(*) FILTER (WHERE jsonb_typeof(s.value #> %s) = 'array') "
    "FROM (SELECT {column} AS value FROM {table} LIMIT %s) AS s"
)

#: The application's legacy chat_threads.message_count, audited and repaired
#: in batches (counters/0004) when the table has it.
LEGACY_COUNT_PRESENT = """
SELECT to_regproc('feature_gates_message_count_batch') IS NOT NULL
       AND EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = to_regclass('chat_threads') AND attname = 'message_count'
                     AND NOT attisdropped)
"""
LEGACY_COUNT_BATCH = """
SELECT scanned, last_key, differing, examples FROM feature_gates_message_count_batch(%s, %s)
"""

# -- maintenance functions of the core set ---------------------------------------

ARCHIVE = """
SELECT archive_old_feature_usage(%(keep)s),
       (feature_usage_current_period() - make_interval(months => %(keep)s))::date
"""
#: Moves delivered and dead alerts out; whether it is installed (core/0031).
ARCHIVE_ALERTS = "SELECT archive_feature_usage_alerts(%(keep)s::integer)"
HAS_ALERTS = "SELECT to_regprocedure('archive_feature_usage_alerts(integer)') IS NOT NULL"
REFRESH = "SELECT refresh_feature_usage_summary()"

# -- usage alerts (`feature-gates alerts`) ----------------------------------------

#: The most recent alerts, newest first, with how their delivery stands.
RECENT_ALERTS = """
-- all subjects: a report for operators, not a request's statement.
SELECT event_id, occurred_at, user_id::text, scope, member::text, feature, period,
       threshold, used, usage_limit, state, attempts, sent_at, last_error
FROM feature_usage_alerts
WHERE %(since)s::timestamptz IS NULL OR occurred_at >= %(since)s
ORDER BY occurred_at DESC, id DESC
LIMIT %(limit)s
"""
#: Alerts by delivery state, and those that took more than one attempt.
ALERT_STATS = """
-- all subjects: a report for operators, not a request's statement.
SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'sent'),
       count(*) FILTER (WHERE attempts > 1), count(*) FILTER (WHERE state = 'dead')
FROM feature_usage_alerts
"""
#: Delivers alerts again, by event id or since a time; returns how many.
REPLAY_ALERTS = "SELECT feature_usage_alerts_replay(%(ids)s::uuid[], %(since)s)"
PRUNE = "SELECT prune_feature_usage_idempotency(%(keep)s)"
PRUNE_WINDOWS = "SELECT prune_feature_usage_windows()"
#: Every difference between the credits and their ledger (core/0042).
CREDITS_AUDIT = "SELECT problem FROM feature_usage_credits_audit()"
SUMMARY_ROWS = "SELECT count(*) FROM feature_usage_summary"

# -- the psql script of `migrate --sql` -----------------------------------------

SCRIPT_SESSION = sql.SQL(
    """\\set ON_ERROR_STOP on
SET search_path TO {search_path};
SET feature_gates.user_id_type TO {user_id_type};
SET feature_gates.batch_size TO {batch_size};
SET lock_timeout TO {lock_timeout};
SET statement_timeout TO 0;
DO $$
BEGIN
    IF NOT pg_try_advisory_lock({class_id}, {object_id}) THEN
        RAISE EXCEPTION 'another feature-gates migration holds the migration lock; '
                        'run this script again when it has finished';
    END IF;
END
$$;
"""
)
SCRIPT_UNLOCK = sql.SQL("SELECT pg_advisory_unlock({class_id}, {object_id});\n")
SCRIPT_SET_LOCK_TIMEOUT = sql.SQL("SET lock_timeout TO {lock_timeout};\n")
SCRIPT_NO_LOCK_TIMEOUT = "SET lock_timeout TO 0;\n"
SCRIPT_DROP_INVALID_INDEX = sql.SQL(
    """SELECT format('DROP INDEX CONCURRENTLY %I.%I', n.nspname, c.relname)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = {index} AND n.nspname = ANY (current_schemas(false)) AND NOT i.indisvalid
\\gexec
"""
)
#: A batched statement as one DO block that commits after every batch (DO may
#: COMMIT when psql runs it outside a transaction block).
SCRIPT_BATCHED = sql.SQL(
    """DO $feature_gates_batch$
DECLARE
    v_scanned bigint;
BEGIN
    LOOP
        SELECT s.scanned INTO v_scanned FROM (
{statement}
        ) AS s;
        EXIT WHEN coalesce(v_scanned, 0) = 0;
        COMMIT;
    END LOOP;
END
$feature_gates_batch$;
"""
)
#: Opens a psql ``\if`` around one migration, true while its history row is
#: absent: run again after a failure, the script skips what it applied before.
#: ``\if`` is psql's own, so the statements inside are sent as they would be
#: outside it (a CONCURRENTLY statement still outside any transaction).
SCRIPT_IF_PENDING = sql.SQL(
    """SELECT NOT EXISTS (SELECT FROM feature_gates_schema_history
                   WHERE set_name = {set_name} AND version = {version})
       AS feature_gates_pending \\gset
\\if :feature_gates_pending
"""
)
SCRIPT_END_IF = "\\endif\n"
SCRIPT_INSERT_HISTORY = sql.SQL(
    "INSERT INTO feature_gates_schema_history (set_name, version, name, checksum, execution_ms)\n"
    "VALUES ({set_name}, {version}, {name}, {checksum}, 0);\n"
)
