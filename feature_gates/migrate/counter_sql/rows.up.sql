-- Adds p_moves[i] to the counter of the parent row whose key is p_keys[i]
-- (each key once). The rows are locked in key order first, so that statements
-- that move several of them at once never deadlock each other. The keys are
-- of the child column's type: anyarray.
CREATE OR REPLACE FUNCTION {move_function}(p_keys anyarray, p_moves integer[])
RETURNS void
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    PERFORM 1 FROM {table} WHERE {parent_column} = ANY (p_keys)
    ORDER BY {parent_column} FOR NO KEY UPDATE;
    UPDATE {table} AS p SET {column} = p.{column} + m.n
    FROM unnest(p_keys, p_moves) AS m (key, n)
    WHERE p.{parent_column} = m.key;
END
$function$;

-- Moves the counter by what each statement on the child table changes: the
-- rows it inserts or deletes, moves from one parent row to another, or lets
-- into and out of the counted ones. One move per statement, not per row, with
-- the changes summed per parent row. A child row that points nowhere (NULL)
-- counts nowhere; TRUNCATE sets every count to 0.
CREATE OR REPLACE FUNCTION {function}()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE {table} SET {column} = 0 WHERE {column} <> 0;
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM {move_function}(array_agg(m.key), array_agg(m.n))
        FROM (SELECT {child_alias}.{child_column}, count(*)::integer
              FROM new_rows AS {child_alias}
              WHERE {child_alias}.{child_column} IS NOT NULL{predicate_and}
              GROUP BY 1) AS m (key, n)
        HAVING count(*) > 0;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM {move_function}(array_agg(m.key), array_agg(m.n))
        FROM (SELECT {child_alias}.{child_column}, -count(*)::integer
              FROM old_rows AS {child_alias}
              WHERE {child_alias}.{child_column} IS NOT NULL{predicate_and}
              GROUP BY 1) AS m (key, n)
        HAVING count(*) > 0;
    ELSE
        PERFORM {move_function}(array_agg(m.key), array_agg(m.n))
        FROM (SELECT c.key, sum(c.n)::integer
              FROM (SELECT {child_alias}.{child_column}, 1
                    FROM new_rows AS {child_alias}
                    WHERE {child_alias}.{child_column} IS NOT NULL{predicate_and}
                    UNION ALL
                    SELECT {child_alias}.{child_column}, -1
                    FROM old_rows AS {child_alias}
                    WHERE {child_alias}.{child_column} IS NOT NULL{predicate_and}) AS c (key, n)
              GROUP BY c.key
              HAVING sum(c.n) <> 0) AS m (key, n)
        HAVING count(*) > 0;
    END IF;
    RETURN NULL;
END
$function$;

-- Gives a new parent row, or one whose key changes, the count of the child
-- rows that already point at it (usually none), whatever the writer put in the
-- counter.
CREATE OR REPLACE FUNCTION {recount_function}()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.{parent_column} IS DISTINCT FROM OLD.{parent_column} THEN
        NEW.{column} := (
            SELECT count(*) FROM {child_from}
            WHERE {child_alias}.{child_column} = NEW.{parent_column}{predicate_and});
    END IF;
    RETURN NEW;
END
$function$;

-- CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock (writes wait) for a few
-- milliseconds; one table per statement.
CREATE OR REPLACE TRIGGER {insert_trigger}
    AFTER INSERT ON {child} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();

CREATE OR REPLACE TRIGGER {delete_trigger}
    AFTER DELETE ON {child} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();

CREATE OR REPLACE TRIGGER {update_trigger}
    AFTER UPDATE ON {child} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();

CREATE OR REPLACE TRIGGER {truncate_trigger}
    AFTER TRUNCATE ON {child}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();

CREATE OR REPLACE TRIGGER {recount_trigger}
    BEFORE INSERT OR UPDATE OF {parent_column} ON {table}
    FOR EACH ROW EXECUTE FUNCTION {recount_function}();
