-- feature-gates: no-transaction
-- Drops the counter {counter_text}.
-- Its triggers and their functions go, and the column when this set added it
-- (its values are lost; migrate computes them again). A column the application
-- had stays, with its values as the triggers left them, its own default and
-- NULLs allowed again if they were. The rows of both tables and every other
-- column are kept.
DROP TRIGGER IF EXISTS {insert_trigger} ON {child};
DROP TRIGGER IF EXISTS {delete_trigger} ON {child};
DROP TRIGGER IF EXISTS {update_trigger} ON {child};
DROP TRIGGER IF EXISTS {truncate_trigger} ON {child};
DROP TRIGGER IF EXISTS {recount_trigger} ON {table};
DROP FUNCTION IF EXISTS {function}();
DROP FUNCTION IF EXISTS {recount_function}();
DROP FUNCTION IF EXISTS {move_function}(anyarray, integer[]);
