-- Moves the counter by what each statement on the child table changes: the
-- rows it inserts or deletes, moves from one parent row to another, or lets
-- into and out of the counted ones. One UPDATE per statement, not per row, with
-- the changes summed per parent row, each locked, in key order, before it is
-- written, so that statements that move several of them at once never
-- deadlock each other. A child row that points nowhere (NULL) counts nowhere;
-- TRUNCATE sets every count to 0.
CREATE OR REPLACE FUNCTION {function}()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE {table} SET {column} = 0 WHERE {column} <> 0;
    ELSIF TG_OP = 'INSERT' THEN
        WITH moves AS (
            SELECT {child_alias}.{child_column} AS key, count(*)::integer AS n
            FROM new_rows AS {child_alias}
            WHERE {child_alias}.{child_column} IS NOT NULL{predicate_and}
            GROUP BY 1
        ), locked AS (
            SELECT p.{parent_column} FROM {table} AS p JOIN moves ON p.{parent_column} = moves.key
            ORDER BY p.{parent_column} FOR NO KEY UPDATE OF p
        )
        UPDATE {table} AS p SET {column} = p.{column} + moves.n
        FROM moves JOIN locked ON locked.{parent_column} = moves.key
        WHERE p.{parent_column} = moves.key;
    ELSIF TG_OP = 'DELETE' THEN
        WITH moves AS (
            SELECT {child_alias}.{child_column} AS key, -count(*)::integer AS n
            FROM old_rows AS {child_alias}
            WHERE {child_alias}.{child_column} IS NOT NULL{predicate_and}
            GROUP BY 1
        ), locked AS (
            SELECT p.{parent_column} FROM {table} AS p JOIN moves ON p.{parent_column} = moves.key
            ORDER BY p.{parent_column} FOR NO KEY UPDATE OF p
        )
        UPDATE {table} AS p SET {column} = p.{column} + moves.n
        FROM moves JOIN locked ON locked.{parent_column} = moves.key
        WHERE p.{parent_column} = moves.key;
    ELSE
        WITH moves AS (
            SELECT c.key, sum(c.n)::integer AS n
            FROM (SELECT {child_alias}.{child_column}, 1
                  FROM new_rows AS {child_alias}
                  WHERE {child_alias}.{child_column} IS NOT NULL{predicate_and}
                  UNION ALL
                  SELECT {child_alias}.{child_column}, -1
                  FROM old_rows AS {child_alias}
                  WHERE {child_alias}.{child_column} IS NOT NULL{predicate_and}) AS c (key, n)
            GROUP BY c.key
            HAVING sum(c.n) <> 0
        ), locked AS (
            SELECT p.{parent_column} FROM {table} AS p JOIN moves ON p.{parent_column} = moves.key
            ORDER BY p.{parent_column} FOR NO KEY UPDATE OF p
        )
        UPDATE {table} AS p SET {column} = p.{column} + moves.n
        FROM moves JOIN locked ON locked.{parent_column} = moves.key
        WHERE p.{parent_column} = moves.key;
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
