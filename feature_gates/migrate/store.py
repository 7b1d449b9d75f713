"""Every SQL statement the migration runner sends, in one place.

The SQL of the migrations themselves lives in the .sql files of each set.
"""

from __future__ import annotations

import struct

# The advisory lock is taken with two int4 keys: a keyspace of its own that cannot
# collide with the single bigint keys other migration tools use.
LOCK_CLASS_ID: int = struct.unpack(">i", b"fgat")[0]
LOCK_OBJECT_ID: int = 1

TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
LOCK_HOLDER = """
SELECT a.pid, a.usename, a.application_name, a.client_addr::text, a.backend_start
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid::int = %s AND l.objid::int = %s AND l.objsubid = 2
"""

SET_SEARCH_PATH = "SELECT set_config('search_path', quote_ident(%s) || ', pg_temp', false)"
SET_USER_ID_TYPE = "SELECT set_config('feature_gates.user_id_type', %s, false)"
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"
SET_SESSION_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, false)"
SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"

#: The base type of feature_usage_user_id in the target schema, or NULL before
#: the first install.
RECORDED_USER_ID_TYPE = """
SELECT format_type(t.typbasetype, NULL)
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typname = 'feature_usage_user_id' AND n.nspname = %s
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
