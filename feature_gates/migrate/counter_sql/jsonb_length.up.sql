-- Sets the counter of each row written to the length of the JSON array at the
-- path, and to 0 when that is not an array (NULL, no such key, JSON null, an
-- object, a scalar), whatever the writer put in it.
CREATE OR REPLACE FUNCTION {function}()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    NEW.{column} := feature_gates_jsonb_array_length(NEW.{jsonb_column}, {path});
    RETURN NEW;
END
$function$;

-- CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock (writes wait) for a few
-- milliseconds.
CREATE OR REPLACE TRIGGER {trigger}
    BEFORE INSERT OR UPDATE OF {jsonb_column}, {column} ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
