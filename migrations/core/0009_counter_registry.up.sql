-- Counter columns of any application: the registry of every counter a
-- migration set installed (the sets `feature-gates counter add` writes, and
-- the bundled counters set), and the functions those sets, `verify`,
-- `repair-counters` and the backfills run on any of them. Nothing here
-- touches an application table: a set registers its counter and installs its
-- own column, triggers and index (docs/counters.md).

-- One row per counter. A counter is a column of a parent table that holds,
-- for each of its rows, either how many rows of a child table point at it
-- (kind 'rows', optionally only those a predicate on the child row accepts),
-- or the length of a JSON array inside one of its own jsonb columns (kind
-- 'jsonb_length'). What the application had under the counter's names before
-- the set ran (had_column, was_nullable, old_default, had_index) is recorded
-- once, so that a rollback gives it back instead of dropping it.
CREATE TABLE IF NOT EXISTS feature_gates_counter_registry (
    counter        text        PRIMARY KEY,
    table_schema   text,
    table_name     text        NOT NULL,
    column_name    text        NOT NULL,
    key_column     text        NOT NULL,
    kind           text        NOT NULL,
    child_schema   text,
    child_table    text,
    child_column   text,
    parent_column  text,
    predicate      text,
    jsonb_column   text,
    jsonb_path     text[],
    index_name     text,
    index_columns  text[],
    table_triggers text[]      NOT NULL DEFAULT '{}',
    child_triggers text[]      NOT NULL DEFAULT '{}',
    had_column     boolean     NOT NULL,
    was_nullable   boolean,
    old_default    text,
    had_index      boolean     NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_gates_counter_registry_kind CHECK (
        (kind = 'rows' AND child_table IS NOT NULL AND child_column IS NOT NULL
         AND parent_column IS NOT NULL AND jsonb_column IS NULL)
        OR (kind = 'jsonb_length' AND jsonb_column IS NOT NULL AND jsonb_path IS NOT NULL
            AND child_table IS NULL AND predicate IS NULL)),
    CONSTRAINT feature_gates_counter_registry_index CHECK (
        (index_name IS NULL) = (index_columns IS NULL))
);

-- How far each counter's backfill ('backfill') and audit ('audit') got: an
-- interrupted one resumes after the last batch it committed.
CREATE TABLE IF NOT EXISTS feature_gates_counter_positions (
    counter    text        NOT NULL,
    step       text        NOT NULL,
    last_key   text,
    done       boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (counter, step)
);

-- The length of the JSON array at p_path in p_value, and 0 for anything else
-- (NULL, no such key, JSON null, an object, a scalar). Never fails.
CREATE OR REPLACE FUNCTION feature_gates_jsonb_array_length(p_value jsonb, p_path text[])
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT CASE WHEN jsonb_typeof(p_value #> p_path) = 'array'
                THEN jsonb_array_length(p_value #> p_path)
                ELSE 0 END
$$;

-- A table named by an optional schema and a name, quoted for dynamic SQL.
CREATE OR REPLACE FUNCTION feature_gates_counter_relation(p_schema text, p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT CASE WHEN p_schema IS NULL THEN quote_ident(p_name)
                ELSE format('%I.%I', p_schema, p_name) END
$$;

-- A registered counter, or an error naming it.
CREATE OR REPLACE FUNCTION feature_gates_counter(p_counter text)
RETURNS feature_gates_counter_registry
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_counter feature_gates_counter_registry;
BEGIN
    SELECT * INTO v_counter FROM feature_gates_counter_registry WHERE counter = p_counter;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no counter % is registered in this database', quote_literal(p_counter)
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT counter FROM feature_gates_counter_registry lists them';
    END IF;
    RETURN v_counter;
END
$$;

-- The index problem of a counter, or NULL: a relation of the index's name in
-- the table's schema that is not an index on the table leading with the
-- registered columns (CREATE INDEX ... IF NOT EXISTS would take it for the
-- counter's), or an INVALID one the runner cannot see to rebuild (in a schema
-- outside its search path).
CREATE OR REPLACE FUNCTION feature_gates_counter_index_problem(p_counter text)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v feature_gates_counter_registry := feature_gates_counter(p_counter);
    v_table regclass;
    v_found record;
BEGIN
    v_table := to_regclass(feature_gates_counter_relation(v.table_schema, v.table_name));
    IF v.index_name IS NULL OR v_table IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.oid, c.relkind, n.nspname, i.indrelid, i.indisvalid,
           (SELECT array_agg(a.attname::text ORDER BY k.n)
            FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, n)
            LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
               AS columns
    INTO v_found
    FROM pg_class t
    JOIN pg_class c ON c.relname = v.index_name AND c.relnamespace = t.relnamespace
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    WHERE t.oid = v_table;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT coalesce(v_found.indrelid = v_table
                    AND v_found.columns[1:cardinality(v.index_columns)] = v.index_columns,
                    false) THEN
        RETURN format('%s (%s) is not an index on %s (%s, ...), which the counter %s needs; '
                      'rename it or drop it, then run migrate', v.index_name,
                      CASE WHEN v_found.relkind IN ('i', 'I') THEN pg_get_indexdef(v_found.oid)
                           ELSE format('a relation of kind %L, not an index', v_found.relkind)
                      END,
                      v_table, array_to_string(v.index_columns, ', '), p_counter);
    END IF;
    IF NOT v_found.indisvalid AND NOT v_found.nspname = ANY (current_schemas(false)) THEN
        RETURN format('%s is INVALID (a failed concurrent build); drop it with DROP INDEX '
                      'CONCURRENTLY %I.%I, then run migrate', v.index_name, v_found.nspname,
                      v.index_name);
    END IF;
    RETURN NULL;
END
$$;

-- Stops a concurrent build of a counter's index that IF NOT EXISTS would
-- skip for the wrong reason (see feature_gates_counter_index_problem).
CREATE OR REPLACE FUNCTION feature_gates_counter_check_index(p_counter text)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_problem text := feature_gates_counter_index_problem(p_counter);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'duplicate_object';
    END IF;
END
$$;

-- Records a counter, once, before its set changes anything: checks that its
-- tables and columns are there (an existing counter column must be an
-- integer), that no relation already has its index's name without being what
-- that index must be, and what the application had under the counter's
-- names. Run again (an interrupted set resumes from its first statement), it
-- keeps the first record: the column it added by then is not the
-- application's.
CREATE OR REPLACE FUNCTION feature_gates_counter_register(
    counter text, table_name text, column_name text, key_column text,
    table_schema text DEFAULT NULL,
    child_table text DEFAULT NULL, child_column text DEFAULT NULL,
    parent_column text DEFAULT NULL, child_schema text DEFAULT NULL,
    predicate text DEFAULT NULL,
    jsonb_column text DEFAULT NULL, jsonb_path text[] DEFAULT NULL,
    index_name text DEFAULT NULL, index_columns text[] DEFAULT NULL,
    table_triggers text[] DEFAULT '{}', child_triggers text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    -- The parameters have the registry's column names, for the sets' named
    -- arguments; inside, they are read qualified.
    v_table regclass;
    v_child regclass;
    v_missing text[] := '{}';
    v_column record;
BEGIN
    IF EXISTS (SELECT 1 FROM feature_gates_counter_registry r
               WHERE r.counter = feature_gates_counter_register.counter) THEN
        RETURN;
    END IF;
    v_table := to_regclass(feature_gates_counter_relation(
        feature_gates_counter_register.table_schema, feature_gates_counter_register.table_name));
    IF feature_gates_counter_register.child_table IS NOT NULL THEN
        v_child := to_regclass(feature_gates_counter_relation(
            feature_gates_counter_register.child_schema,
            feature_gates_counter_register.child_table));
    END IF;
    IF v_table IS NULL THEN
        v_missing := v_missing || feature_gates_counter_relation(
            feature_gates_counter_register.table_schema, feature_gates_counter_register.table_name);
    END IF;
    IF feature_gates_counter_register.child_table IS NOT NULL AND v_child IS NULL THEN
        v_missing := v_missing || feature_gates_counter_relation(
            feature_gates_counter_register.child_schema,
            feature_gates_counter_register.child_table);
    END IF;
    SELECT v_missing || coalesce(array_agg(format('%s.%I', w.tbl, w.col)), '{}')
    INTO v_missing
    FROM (VALUES (v_table, feature_gates_counter_register.key_column),
                 (v_table, feature_gates_counter_register.jsonb_column),
                 (v_table, feature_gates_counter_register.parent_column),
                 (v_child, feature_gates_counter_register.child_column)) AS w (tbl, col)
    WHERE w.tbl IS NOT NULL AND w.col IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = w.tbl AND a.attname = w.col AND NOT a.attisdropped);
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION 'the counter % needs %, which this database does not have',
                        feature_gates_counter_register.counter, array_to_string(v_missing, ', ')
            USING ERRCODE = 'undefined_table',
                  HINT = 'create them first (in a migration set listed before this one), or '
                         'remove this set from FEATURE_GATES_MIGRATION_SETS';
    END IF;
    SELECT a.attnum, a.atttypid, a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default_value
    INTO v_column
    FROM pg_attribute a
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = v_table AND a.attname = feature_gates_counter_register.column_name
      AND NOT a.attisdropped;
    IF FOUND AND v_column.atttypid <> 'integer'::regtype THEN
        RAISE EXCEPTION '%.% exists as %, not integer; a counter adopts an existing column '
                        'only as an integer: rename it or drop it, then run migrate',
                        v_table, quote_ident(feature_gates_counter_register.column_name),
                        format_type(v_column.atttypid, NULL)
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    INSERT INTO feature_gates_counter_registry
        (counter, table_schema, table_name, column_name, key_column, kind,
         child_schema, child_table, child_column, parent_column, predicate,
         jsonb_column, jsonb_path, index_name, index_columns, table_triggers, child_triggers,
         had_column, was_nullable, old_default, had_index)
    VALUES (feature_gates_counter_register.counter, feature_gates_counter_register.table_schema,
            feature_gates_counter_register.table_name, feature_gates_counter_register.column_name,
            feature_gates_counter_register.key_column,
            CASE WHEN feature_gates_counter_register.jsonb_column IS NULL THEN 'rows'
                 ELSE 'jsonb_length' END,
            feature_gates_counter_register.child_schema, feature_gates_counter_register.child_table,
            feature_gates_counter_register.child_column,
            feature_gates_counter_register.parent_column, feature_gates_counter_register.predicate,
            feature_gates_counter_register.jsonb_column, feature_gates_counter_register.jsonb_path,
            feature_gates_counter_register.index_name, feature_gates_counter_register.index_columns,
            feature_gates_counter_register.table_triggers,
            feature_gates_counter_register.child_triggers,
            v_column.attnum IS NOT NULL, NOT v_column.attnotnull, v_column.default_value,
            -- An INVALID index is not kept: the runner replaces it.
            EXISTS (SELECT 1 FROM pg_class t
                    JOIN pg_class c ON c.relname = feature_gates_counter_register.index_name
                                   AND c.relnamespace = t.relnamespace
                    JOIN pg_index i ON i.indexrelid = c.oid
                    WHERE t.oid = v_table AND i.indisvalid));
    -- After the record: the problem is read from it. Raised, it takes the
    -- record back with everything else of this transaction.
    PERFORM feature_gates_counter_check_index(feature_gates_counter_register.counter);
END
$$;

-- The true value of a counter for the parent row aliased feature_gates_parent,
-- as SQL. A predicate reads the child row: its columns unqualified, or
-- qualified by the child table's name (the child's alias).
CREATE OR REPLACE FUNCTION feature_gates_counter_truth(p_counter feature_gates_counter_registry)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT CASE p_counter.kind
        WHEN 'rows' THEN
            format('(SELECT count(*) FROM %s AS %I WHERE %I.%I = feature_gates_parent.%I%s)',
                   feature_gates_counter_relation(p_counter.child_schema, p_counter.child_table),
                   p_counter.child_table, p_counter.child_table, p_counter.child_column,
                   p_counter.parent_column,
                   CASE WHEN p_counter.predicate IS NOT NULL
                        THEN format(' AND (%s)', p_counter.predicate) END)
        ELSE
            format('feature_gates_jsonb_array_length(feature_gates_parent.%I, %L::text[])',
                   p_counter.jsonb_column, p_counter.jsonb_path)
    END
$$;

-- One batch of a counter: the next feature_gates.batch_size rows of its table
-- after p_after (by primary key; NULL: from the first): how many were looked
-- at, the last key, and the rows whose counter differs from the truth (how
-- many, and up to 20 as 'id=7 has 3, truth 4'). With p_repair those rows are
-- set right (differing then counts the rows written).
--
-- A repair of a 'rows' counter locks the batch's rows first, in key order,
-- and counts in the next statement, which sees what committed meanwhile: a
-- child row written meanwhile either committed before (and is counted) or has
-- its trigger wait for this batch (and adds itself after), so the counter is
-- exact either way. Only the locked rows are counted and written. A
-- 'jsonb_length' counter needs no lock: its trigger recomputes the count of
-- any row this batch writes from the row as it is then.
CREATE OR REPLACE FUNCTION feature_gates_counter_batch(
    p_counter text, p_after text, p_repair boolean,
    OUT scanned integer, OUT last_key text, OUT differing integer, OUT examples text[])
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_size integer := coalesce(
        nullif(current_setting('feature_gates.batch_size', true), '')::integer, 1000);
    v feature_gates_counter_registry := feature_gates_counter(p_counter);
    v_table text := feature_gates_counter_relation(v.table_schema, v.table_name);
    v_key_type text;
    v_rows text;
    v_locked text[];
BEGIN
    SELECT format_type(a.atttypid, a.atttypmod) INTO v_key_type
    FROM pg_attribute a
    WHERE a.attrelid = to_regclass(v_table) AND a.attname = v.key_column AND NOT a.attisdropped;
    IF v_key_type IS NULL THEN
        RAISE EXCEPTION 'the counter %: %.% is gone', p_counter, v_table, quote_ident(v.key_column)
            USING ERRCODE = 'undefined_column';
    END IF;
    -- The batch's rows: the next ones after p_after, or those this batch locked.
    v_rows := format('($1::text IS NULL OR feature_gates_parent.%1$I > $1::%2$s) '
                     'ORDER BY feature_gates_parent.%1$I LIMIT $2', v.key_column, v_key_type);
    IF p_repair AND v.kind = 'rows' THEN
        EXECUTE format('SELECT array_agg(k) FROM (SELECT feature_gates_parent.%I::text '
                       'FROM %s AS feature_gates_parent WHERE %s FOR NO KEY UPDATE) AS locked (k)',
                       v.key_column, v_table, v_rows)
            INTO v_locked USING p_after, v_size;
        v_rows := format('feature_gates_parent.%I = ANY ($4::%s[])', v.key_column, v_key_type);
    END IF;
    EXECUTE format(
        $sql$
        WITH batch AS (
            SELECT feature_gates_parent.%1$I AS key, feature_gates_parent.%2$I AS stored,
                   %3$s AS actual
            FROM %4$s AS feature_gates_parent
            WHERE %5$s
        ), off AS (
            SELECT * FROM batch WHERE stored IS DISTINCT FROM actual
        ), fixed AS (
            UPDATE %4$s AS t SET %2$I = off.actual
            FROM off
            WHERE $3 AND t.%1$I = off.key
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM batch)::integer,
               (SELECT b.key::text FROM batch b ORDER BY b.key DESC LIMIT 1),
               (CASE WHEN $3 THEN (SELECT count(*) FROM fixed)
                     ELSE (SELECT count(*) FROM off) END)::integer,
               coalesce((SELECT array_agg(format('%%s=%%s has %%s, truth %%s', %6$L, o.key,
                                                 coalesce(o.stored::text, 'NULL'), o.actual)
                                          ORDER BY o.key)
                         FROM (SELECT * FROM off ORDER BY key LIMIT 20) AS o), '{}')
        $sql$,
        v.key_column, v.column_name, feature_gates_counter_truth(v), v_table, v_rows,
        v.key_column)
        INTO scanned, last_key, differing, examples
        USING p_after, v_size, p_repair, v_locked;
END
$$;

-- Where a counter's step ('backfill' or 'audit') got, locked for the
-- transaction of the batch that moves it on (a first call starts it).
CREATE OR REPLACE FUNCTION feature_gates_counter_position(
    p_counter text, p_step text, OUT last_key text, OUT done boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO feature_gates_counter_positions (counter, step)
    VALUES (p_counter, p_step)
    ON CONFLICT (counter, step) DO NOTHING;
    SELECT p.last_key, p.done INTO last_key, done
    FROM feature_gates_counter_positions p
    WHERE p.counter = p_counter AND p.step = p_step
    FOR UPDATE;
END
$$;

-- Saves where a batch left a counter's step: the step is done when a batch
-- found no row after the position.
CREATE OR REPLACE FUNCTION feature_gates_counter_position_save(
    p_counter text, p_step text, p_last_key text, p_scanned integer)
RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    UPDATE feature_gates_counter_positions
    SET last_key = coalesce(p_last_key, last_key), done = p_scanned = 0, updated_at = now()
    WHERE counter = p_counter AND step = p_step
$$;

-- One batch of a counter's backfill in a set's migration (a batched step):
-- repairs the rows after the position the last batch saved, and saves its
-- own. Returns the rows looked at (0 when done) and the rows changed.
CREATE OR REPLACE FUNCTION feature_gates_counter_backfill_step(
    p_counter text, OUT scanned integer, OUT changed integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_at record := feature_gates_counter_position(p_counter, 'backfill');
    v_last text;
BEGIN
    scanned := 0;
    changed := 0;
    IF v_at.done THEN
        RETURN;
    END IF;
    SELECT b.scanned, b.last_key, b.differing INTO scanned, v_last, changed
    FROM feature_gates_counter_batch(p_counter, v_at.last_key, true) AS b;
    PERFORM feature_gates_counter_position_save(p_counter, 'backfill', v_last, scanned);
END
$$;

-- One batch of a counter's audit in a set's migration (a batched step):
-- compares the rows after the saved position with the truth, in one snapshot,
-- and stops the migration, naming them, when any differs. Returns the rows
-- looked at (0 when done).
CREATE OR REPLACE FUNCTION feature_gates_counter_audit_step(p_counter text, OUT scanned integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_at record := feature_gates_counter_position(p_counter, 'audit');
    v_last text;
    v_differing integer;
    v_examples text[];
BEGIN
    scanned := 0;
    IF v_at.done THEN
        RETURN;
    END IF;
    SELECT b.scanned, b.last_key, b.differing, b.examples
    INTO scanned, v_last, v_differing, v_examples
    FROM feature_gates_counter_batch(p_counter, v_at.last_key, false) AS b;
    IF v_differing > 0 THEN
        RAISE EXCEPTION 'counter audit failed: % rows of % differ from the truth: %',
                        v_differing, p_counter, array_to_string(v_examples, '; ')
            USING ERRCODE = 'data_exception',
                  HINT = 'run "feature-gates repair-counters", then migrate again';
    END IF;
    PERFORM feature_gates_counter_position_save(p_counter, 'audit', v_last, scanned);
END
$$;

-- Forgets where a counter's backfill and audit got: run at the end of its
-- set's backfill, and by its rollback.
CREATE OR REPLACE FUNCTION feature_gates_counter_positions_clear(p_counter text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    DELETE FROM feature_gates_counter_positions WHERE counter = p_counter
$$;

-- Rollback of a counter's index: renames the index its set built to
-- p_drop_as, for a DROP INDEX CONCURRENTLY IF EXISTS of that name (which
-- cannot be conditional); an index of that name the application had before
-- is left alone.
CREATE OR REPLACE FUNCTION feature_gates_counter_index_to_drop(p_counter text, p_drop_as text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v feature_gates_counter_registry;
    v_index regclass;
BEGIN
    SELECT * INTO v FROM feature_gates_counter_registry WHERE counter = p_counter;
    IF NOT FOUND OR v.had_index OR v.index_name IS NULL THEN
        RETURN;
    END IF;
    SELECT c.oid::regclass INTO v_index
    FROM pg_class t
    JOIN pg_class c ON c.relname = v.index_name AND c.relnamespace = t.relnamespace
    WHERE t.oid = to_regclass(feature_gates_counter_relation(v.table_schema, v.table_name))
      AND c.relkind = 'i';
    IF v_index IS NOT NULL THEN
        EXECUTE format('ALTER INDEX %s RENAME TO %I', v_index, p_drop_as);
    END IF;
END
$$;

-- Rollback of a counter: drops the column its set added, or gives a column
-- the application had back its default and its NULLs (its values stay, exact
-- as of now); then forgets the counter. Without a record (the rollback
-- finished already) it does nothing.
CREATE OR REPLACE FUNCTION feature_gates_counter_release(p_counter text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v feature_gates_counter_registry;
    v_table text;
BEGIN
    SELECT * INTO v FROM feature_gates_counter_registry WHERE counter = p_counter;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_table := feature_gates_counter_relation(v.table_schema, v.table_name);
    IF to_regclass(v_table) IS NOT NULL THEN
        IF NOT v.had_column THEN
            EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', v_table, v.column_name);
        ELSE
            -- old_default is the column's own default expression, as the catalog
            -- printed it.
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I, ALTER COLUMN %I %s',
                           v_table, left(format('feature_gates_%s_not_null', v.column_name), 63),
                           v.column_name,
                           CASE WHEN v.old_default IS NULL THEN 'DROP DEFAULT'
                                ELSE 'SET DEFAULT ' || v.old_default END);
            IF v.was_nullable THEN
                EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', v_table,
                               v.column_name);
            END IF;
        END IF;
    END IF;
    PERFORM feature_gates_counter_positions_clear(p_counter);
    DELETE FROM feature_gates_counter_registry WHERE counter = p_counter;
END
$$;

-- What verify finds wrong with the registered counters' schema, one row per
-- problem (their values are compared with the truth in batches, by verify
-- itself): a table gone, a column that is not integer NOT NULL DEFAULT 0, a
-- trigger missing or disabled, an index missing or not what it must be.
CREATE OR REPLACE FUNCTION feature_gates_counter_problems()
RETURNS TABLE (problem text, detail text)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    WITH counters AS (
        SELECT r.*,
               feature_gates_counter_relation(r.table_schema, r.table_name) AS tbl,
               to_regclass(feature_gates_counter_relation(r.table_schema, r.table_name)) AS rel,
               to_regclass(feature_gates_counter_relation(r.child_schema, r.child_table)) AS child
        FROM feature_gates_counter_registry r
    ), triggers AS (
        SELECT c.counter, c.rel AS owner, c.tbl AS owner_name, t.name
        FROM counters c, unnest(c.table_triggers) AS t (name)
        UNION ALL
        SELECT c.counter, c.child,
               feature_gates_counter_relation(c.child_schema, c.child_table), t.name
        FROM counters c, unnest(c.child_triggers) AS t (name)
    )
    SELECT 'counter', format('%s is registered, but %s is gone; roll back the set that added '
                             'it, or delete its row from feature_gates_counter_registry',
                             c.counter,
                             CASE WHEN c.rel IS NULL THEN c.tbl
                                  ELSE feature_gates_counter_relation(c.child_schema,
                                                                      c.child_table) END)
    FROM counters c
    WHERE c.rel IS NULL OR (c.child_table IS NOT NULL AND c.child IS NULL)
    UNION ALL
    SELECT 'column', CASE WHEN a.attnum IS NULL
                          THEN format('%s.%I is missing; the counter %s needs it: roll back its '
                                      'set and run migrate', c.tbl, c.column_name, c.counter)
                          ELSE format('%s.%I is %s%s DEFAULT %s; the counter must be integer '
                                      'NOT NULL DEFAULT 0: ALTER TABLE %s ALTER COLUMN %I %s',
                                      c.tbl, c.column_name, format_type(a.atttypid, a.atttypmod),
                                      CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END,
                                      coalesce(pg_get_expr(d.adbin, d.adrelid), 'none'), c.tbl,
                                      c.column_name,
                                      CASE WHEN a.attnotnull THEN 'SET DEFAULT 0'
                                           ELSE 'SET NOT NULL' END) END
    FROM counters c
    LEFT JOIN pg_attribute a ON a.attrelid = c.rel AND a.attname = c.column_name
                            AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.rel IS NOT NULL
      AND NOT coalesce(a.atttypid = 'integer'::regtype AND a.attnotnull
                       AND pg_get_expr(d.adbin, d.adrelid) IS NOT DISTINCT FROM '0', false)
    UNION ALL
    SELECT 'trigger', CASE WHEN g.oid IS NULL
                           THEN format('trigger %I on %s is missing; %s drifts without it: roll '
                                       'back and migrate the set that added it, then run '
                                       'repair-counters', t.name, t.owner_name, t.counter)
                           ELSE format('trigger %I on %s is disabled; %s drifts without it: '
                                       'ALTER TABLE %s ENABLE TRIGGER %I, then run '
                                       'repair-counters', t.name, t.owner_name, t.counter,
                                       t.owner_name, t.name) END
    FROM triggers t
    LEFT JOIN pg_trigger g ON g.tgrelid = t.owner AND g.tgname = t.name
    WHERE t.owner IS NOT NULL AND (g.oid IS NULL OR g.tgenabled = 'D')
    UNION ALL
    SELECT 'index', format('%s on %s is missing; the counter %s needs it: roll back and migrate '
                           'the set that added it', c.index_name, c.tbl, c.counter)
    FROM counters c
    WHERE c.rel IS NOT NULL AND c.index_name IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM pg_class i
                      JOIN pg_class t ON t.oid = c.rel AND i.relnamespace = t.relnamespace
                      WHERE i.relname = c.index_name)
    UNION ALL
    SELECT 'index', feature_gates_counter_index_problem(c.counter)
    FROM counters c
    WHERE c.rel IS NOT NULL AND feature_gates_counter_index_problem(c.counter) IS NOT NULL
$$;
